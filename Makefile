# The README's two commands: `make demo` and `make test`. Both install missing Debian
# packages first (needs root), then build into build/.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# CUDA architectures to compile for; empty: the GPUs of this machine, else every supported one
# (cmake/cuda.cmake). CI (nvcc, no GPU) names a smaller set to keep its compile time down.
CUDA_ARCHITECTURES ?=
ifneq ($(CUDA_ARCHITECTURES),)
CMAKE_FLAGS += -DCMAKE_CUDA_ARCHITECTURES="$(CUDA_ARCHITECTURES)"
endif

.PHONY: all deps configure build test demo format format-check clean

all: build

deps:
	@bash scripts/install-deps.sh
	@bash scripts/install-test-clients.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build format-check
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) --timeout 600

demo: build
	@bash scripts/demo.sh $(BUILD_DIR)

format:
	@bash scripts/format.sh fix

format-check:
	@bash scripts/format.sh check

clean:
	@rm -rf $(BUILD_DIR)
