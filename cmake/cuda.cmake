# RBEE_CUDA=AUTO turns the CUDA backend on when the toolkit's nvcc is found. CI has nvcc
# but no GPU: the code must compile there, and GPU tests skip at run time.
#
# Architectures: an explicit -DCMAKE_CUDA_ARCHITECTURES (or CUDAARCHS in the environment) wins;
# otherwise the build targets the GPUs of this machine (nvidia-smi's compute capabilities) or,
# with none, every supported one (rbee_cuda_all_architectures). The choice is made before
# enable_language(CUDA), which would otherwise fill in nvcc's own default.
set(rbee_cuda_all_architectures "80-real;86-real;89-real;90-real;90-virtual")

# The compute capabilities of this machine's GPUs as CMake architectures ("90"), each once;
# empty without a GPU or driver. Tensor-core kernels (WMMA) need 7.0 or newer.
function(rbee_detect_cuda_architectures out)
  set(found "")
  find_program(RBEE_NVIDIA_SMI nvidia-smi)
  if(RBEE_NVIDIA_SMI)
    execute_process(COMMAND ${RBEE_NVIDIA_SMI} --query-gpu=compute_cap --format=csv,noheader
                    OUTPUT_VARIABLE caps RESULT_VARIABLE rc ERROR_QUIET
                    OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(rc EQUAL 0)
      string(REPLACE "\n" ";" caps "${caps}")
      foreach(cap ${caps})
        string(STRIP "${cap}" cap)
        if(cap MATCHES "^([0-9]+)\\.([0-9]+)$" AND CMAKE_MATCH_1 GREATER_EQUAL 7)
          list(APPEND found "${CMAKE_MATCH_1}${CMAKE_MATCH_2}")
        endif()
      endforeach()
      list(REMOVE_DUPLICATES found)
    endif()
  endif()
  set(${out} "${found}" PARENT_SCOPE)
endfunction()

set(RBEE_HAVE_CUDA OFF)
if(NOT RBEE_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Our own earlier choice (RBEE_CUDA_ARCHITECTURES_AUTO) is made again on each configure, and
    # so is nvcc's default that enable_language cached in a build directory configured before
    # this choice existed; any other value was given by hand.
    get_property(rbee_cached_help CACHE CMAKE_CUDA_ARCHITECTURES PROPERTY HELPSTRING)
    set(rbee_cuda_architectures_given OFF)
    if(DEFINED ENV{CUDAARCHS})
      set(rbee_cuda_architectures_given ON)
    elseif(DEFINED CMAKE_CUDA_ARCHITECTURES)
      if(DEFINED RBEE_CUDA_ARCHITECTURES_AUTO)
        if(NOT CMAKE_CUDA_ARCHITECTURES STREQUAL "${RBEE_CUDA_ARCHITECTURES_AUTO}")
          set(rbee_cuda_architectures_given ON)
        endif()
      elseif(NOT rbee_cached_help STREQUAL "CUDA architectures")
        set(rbee_cuda_architectures_given ON)
      endif()
    endif()
    if(rbee_cuda_architectures_given)
      set(rbee_cuda_architectures_from "as given")
    else()
      rbee_detect_cuda_architectures(detected)
      if(detected)
        set(CMAKE_CUDA_ARCHITECTURES "${detected}")
        set(rbee_cuda_architectures_from "the GPUs of this machine")
      else()
        set(CMAKE_CUDA_ARCHITECTURES "${rbee_cuda_all_architectures}")
        set(rbee_cuda_architectures_from "no GPU found: every supported architecture")
      endif()
      set(CMAKE_CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}" CACHE STRING
          "CUDA architectures (default: the GPUs present, else all supported)" FORCE)
      set(RBEE_CUDA_ARCHITECTURES_AUTO "${CMAKE_CUDA_ARCHITECTURES}" CACHE INTERNAL
          "the architectures cuda.cmake chose")
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(RBEE_HAVE_CUDA ON)
    message(STATUS "rbee: CUDA architectures ${CMAKE_CUDA_ARCHITECTURES} "
                   "(${rbee_cuda_architectures_from})")
    # CMake 3.25 does not know nvcc 13's C++20 dialect flag; the device code needs only C++17.
    set(CMAKE_CUDA_STANDARD 17)
  elseif(RBEE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "RBEE_CUDA=ON but no CUDA compiler was found")
  endif()
endif()
message(STATUS "rbee: CUDA backend ${RBEE_HAVE_CUDA}")
