# Every dependency comes from a Debian 12 package (scripts/install-deps.sh).
# RBEE_ENGINE_ONLY builds just the engine, its tool and its tests, with the few packages they
# need: for GPU machines that have the CUDA toolkit but not the daemons' libraries.
option(RBEE_ENGINE_ONLY "Build only the engine, rbee-engine and the engine tests" OFF)

find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(fmt REQUIRED)
find_package(GTest REQUIRED)
if(NOT RBEE_ENGINE_ONLY)
  find_package(PkgConfig REQUIRED)
  find_package(spdlog REQUIRED)
  find_package(SQLite3 REQUIRED)
  find_package(CURL REQUIRED)
  find_package(OpenSSL REQUIRED)
  pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
endif()
