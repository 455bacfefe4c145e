# vllm-rs: the two commands of the quick start are `make demo` and `make test`.
CARGO ?= cargo
CC ?= cc
CXX ?= c++
CUDA_FEATURES := vllm-kernels/cuda,vllm-engine/cuda,vllm-capi/cuda,vllm-cli/cuda
# The demo uses the GPU backend when a CUDA toolchain is installed (scripts/setup-cuda.sh) or nvcc
# is on PATH; the binary itself picks the GPU only when one is present.
HAVE_NVCC := $(or $(wildcard .toolchain/cuda/.installed),$(shell command -v nvcc 2>/dev/null))
DEMO_FEATURES := $(if $(HAVE_NVCC),--features vllm-cli/cuda,)
CUDA_ENV := $(if $(wildcard .toolchain/cuda/.installed),eval "$$(scripts/setup-cuda.sh --env)" &&,)

.PHONY: demo test test-rust test-c test-clients install header cuda-setup cuda-build gpu-bundle fmt clippy ci

# The demo model (SmolLM2-135M-Instruct, Q4_1 GGUF) is fetched once by scripts/fetch-demo-model.sh.
DEMO_PROMPTS := --prompt "What is the capital of France?" \
  --prompt "Write a short poem about the sea." \
  --prompt "Explain what a neural network is in one sentence." \
  --prompt "Translate 'good morning' into Spanish."

demo:
	$(CUDA_ENV) $(CARGO) build --release -p vllm-cli $(DEMO_FEATURES)
	model="$$(scripts/fetch-demo-model.sh)" && \
	  target/release/vllm generate --model "$$model" --chat --temperature 0 --max-tokens 96 $(DEMO_PROMPTS)

test: test-rust test-c test-clients

test-rust:
	VLLM_DEMO_MODEL="$$(scripts/fetch-demo-model.sh)" $(CARGO) test --workspace

# The header alone as C11 and C++17.
test-c:
	$(CC) -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c include/vllm.h
	$(CXX) -std=c++17 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c++ include/vllm.h

# libvllm installed into a temporary prefix, then the C (also under ASan + UBSan and
# valgrind), C++ (CMake) and Go clients built against that prefix and run on a tiny model.
test-clients:
	scripts/setup-clients.sh
	rm -rf $(CURDIR)/target/prefix
	$(MAKE) install PREFIX=$(CURDIR)/target/prefix PROFILE=debug
	tests/clients/run.sh $(CURDIR)/target/prefix

# Installs libvllm.so (SONAME libvllm.so.MAJOR.MINOR while 0.x), libvllm.a, vllm.h, the CMake
# package (vllm::vllm) and vllm.pc under PREFIX.
PREFIX ?= /usr/local
PROFILE ?= release
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
SONAME := libvllm.so.$(shell echo $(VERSION) | cut -d. -f1-2)
install:
	$(CARGO) build -p vllm-capi $(if $(filter release,$(PROFILE)),--release,)
	install -d $(PREFIX)/lib/cmake/vllm $(PREFIX)/lib/pkgconfig $(PREFIX)/include
	install -m 755 target/$(PROFILE)/libvllm.so $(PREFIX)/lib/libvllm.so.$(VERSION)
	ln -sf libvllm.so.$(VERSION) $(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(PREFIX)/lib/libvllm.so
	install -m 644 target/$(PROFILE)/libvllm.a $(PREFIX)/lib/libvllm.a
	install -m 644 include/vllm.h $(PREFIX)/include/vllm.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' cmake/vllm.pc.in > $(PREFIX)/lib/pkgconfig/vllm.pc
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@SONAME@|$(SONAME)|g' cmake/vllmConfig.cmake.in > $(PREFIX)/lib/cmake/vllm/vllmConfig.cmake
	sed -e 's|@VERSION@|$(VERSION)|g' cmake/vllmConfigVersion.cmake.in > $(PREFIX)/lib/cmake/vllm/vllmConfigVersion.cmake

# Regenerate include/vllm.h from vllm-capi (cbindgen, pinned in Cargo.lock).
header:
	VLLM_BLESS_HEADER=1 $(CARGO) test -p vllm-capi --test header

cuda-setup:
	scripts/setup-cuda.sh

cuda-build: cuda-setup
	eval "$$(scripts/setup-cuda.sh --env)" && $(CARGO) build --workspace --all-targets --features $(CUDA_FEATURES)

gpu-bundle:
	scripts/gpu-bundle.sh

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

ci:
	.ci/run
