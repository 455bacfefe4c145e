#!/usr/bin/env bash
# Builds and runs the C, C++ and Go clients against an installed libvllm (make install
# PREFIX=...), on the tiny Qwen2 fixture model. `make test-clients` calls it.
set -euo pipefail
prefix="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
model="$root/tests/fixtures/tiny-qwen2"
out="$root/target/clients"
rm -rf "$out" && mkdir -p "$out"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cflags="$(pkg-config --cflags vllm)"
libs="$(pkg-config --libs vllm)"
rpath="-Wl,-rpath,$prefix/lib"
strict="-std=c11 -Wall -Wextra -Werror -pedantic"
head -c 5000 "$root/tests/fixtures/tiny-llama-gguf/model.gguf" > "$out/truncated.gguf"
step() { echo; echo "== $*"; }

step "C clients (pkg-config, $strict)"
for x in version generate bad_input gpu_params; do
  cc $strict $cflags "$root/examples/c/$x.c" -o "$out/$x" $libs $rpath
done
soname="$(readelf -d "$prefix/lib/libvllm.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')"
version="$(pkg-config --modversion vllm)"
echo "SONAME $soname (version $version)"
[ "$soname" = "libvllm.so.$(echo "$version" | cut -d. -f1-2)" ]
"$out/version"
"$out/generate" "$model"
"$out/bad_input" "$model" "$out/truncated.gguf"
# The GPU options through the C ABI; here (no GPU, or a build without CUDA) creating the CUDA
# engine fails with a typed error and it says so; the GPU bundle runs it on a GPU.
"$out/gpu_params" "$root/benches/configs/qwen3-0.6b"

step "C clients under AddressSanitizer + UndefinedBehaviorSanitizer (leak check on)"
san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g"
for x in generate bad_input; do
  cc $strict $san $cflags "$root/examples/c/$x.c" -o "$out/$x-asan" $libs $rpath
done
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"$out/generate-asan" "$model" > "$out/generate-asan.log"
"$out/bad_input-asan" "$model" "$out/truncated.gguf" > "$out/bad_input-asan.log"
unset ASAN_OPTIONS UBSAN_OPTIONS
echo "sanitized runs clean"

step "C client under valgrind (no definite leak after destroy)"
for x in generate bad_input; do
  valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --error-exitcode=3 \
    "$out/$x" "$model" > "$out/$x-valgrind.log"
done
echo "valgrind clean"

step "C client linked statically (libvllm.a)"
cc $strict $cflags "$root/examples/c/generate.c" -o "$out/generate-static" \
  "$prefix/lib/libvllm.a" -lpthread -ldl -lm -lrt
"$out/generate-static" "$model" | tail -n 1

step "C++ client (CMake find_package(vllm), 8 threads)"
cmake -S "$root/examples/cpp" -B "$out/cpp" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release > "$out/cmake.log"
cmake --build "$out/cpp" > "$out/cmake-build.log"
"$out/cpp/multithread" "$model"

step "Go client (cgo, go test)"
(
  cd "$root/examples/go"
  GOCACHE="$out/gocache" GOPATH="$out/gopath" GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    CGO_LDFLAGS="$rpath" VLLM_TEST_MODEL="$model" go test -count=1 -v ./...
)
echo
echo "clients: all passed"
