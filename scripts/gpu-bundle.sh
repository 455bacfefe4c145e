#!/usr/bin/env bash
# Builds the CUDA tests, benchmarks and the vllm binary in release mode, strips them, and
# gathers them with run.sh into target/gpu-bundle: a folder that runs on a machine with only the
# NVIDIA driver, CUDA's libraries and Python + torch (no Rust). Carry it to the GPU box and run
#   target/gpu-bundle/run.sh RESULTS_DIR
# With --kernels: the vllm-kernels tests and benchmarks alone (no engine, no vllm binary).
set -euo pipefail
kernels_only=0
[ "${1:-}" = "--kernels" ] && kernels_only=1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
eval "$(scripts/setup-cuda.sh --env)"
features="vllm-kernels/cuda,vllm-engine/cuda,vllm-capi/cuda,vllm-cli/cuda"
bundle=target/gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle/tests" "$bundle/bin" "$bundle/benches"

# Test executables: cargo prints them in its JSON messages.
if [ "$kernels_only" = 1 ]; then
  test_scope=(-p vllm-kernels --features cuda)
else
  test_scope=(--workspace --features "$features")
fi
cargo test --release "${test_scope[@]}" --no-run --message-format=json-render-diagnostics |
  python3 -c '
import json, sys, shutil, os
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        t = m["target"]
        if t["name"] == "header":
            continue  # reads the crate sources at its build path; not a GPU test
        name = t["name"] if t["kind"] != ["lib"] else "lib"
        pkg = m["package_id"].split("#")[0].rsplit("/", 1)[-1]
        dst = os.path.join(sys.argv[1], f"{pkg}-{name}")
        shutil.copy(m["executable"], dst)
        print("test:", dst)
' "$bundle/tests"
cargo build --release -p vllm-kernels --features cuda --benches --message-format=json-render-diagnostics |
  python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"]); print("bench:", m["target"]["name"])
' "$bundle/bin"
if [ "$kernels_only" = 0 ]; then
  cargo build --release -p vllm-cli --features cuda
  cp target/release/vllm "$bundle/bin/vllm"
  # libvllm with CUDA under its SONAME, and the C client of its GPU options.
  cargo build --release -p vllm-capi --features cuda
  soname=$(readelf -d target/release/libvllm.so | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
  mkdir -p "$bundle/lib"
  cp target/release/libvllm.so "$bundle/lib/$soname"
  cc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude examples/c/gpu_params.c -o "$bundle/bin/gpu_params" \
    -L"$bundle/lib" -l:"$soname" -Wl,-rpath,'$ORIGIN/../lib'
fi
# Tuning probes: standalone CUDA programs over the library's kernel headers.
nvcc -O3 -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -Icsrc/include -L"$CUDA_HOME/lib" \
  benches/tune/paged_attention_tune.cu -o "$bundle/bin/paged_attention_tune"
strip "$bundle"/tests/* "$bundle"/bin/*
if [ -d "$bundle/lib" ]; then strip "$bundle"/lib/*; fi
cp benches/torch_kernels.py benches/torch_products.py benches/report.py benches/hf_generate.py "$bundle/benches/"
cp -r benches/configs "$bundle/benches/"
cp scripts/bundle-run.sh "$bundle/run.sh"
cp scripts/bundle-engine.sh "$bundle/engine.sh"
cp scripts/bundle-compare.sh "$bundle/compare.sh"
chmod +x "$bundle/run.sh" "$bundle/engine.sh" "$bundle/compare.sh"
du -sh "$bundle"
