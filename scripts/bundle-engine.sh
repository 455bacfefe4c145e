#!/usr/bin/env bash
# engine.sh of the GPU bundle (copied there by scripts/gpu-bundle.sh): the end-to-end benchmarks
# of the CUDA engine and the same workloads through HuggingFace transformers in the same run.
#   engine.sh RESULTS_DIR [copy|gemv|products|sm90|latency|throughput|async|capi|phases|sampling|soak|hf-latency|hf-throughput ...]
# (no parts named: all). Writes one log per part and prints the figures.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: engine.sh RESULTS_DIR [PARTS...]}
shift
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(copy gemv products sm90 latency throughput async capi phases sampling soak hf-latency hf-throughput)
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/device.txt" 2>&1
vllm=$here/bin/vllm
cfg=$here/benches/configs
status=0
run() { # name, command...
  local name=$1; shift
  echo "== $name: $*" | tee -a "$out/engine.log"
  if timeout "${LIMIT:-900}" "$@" > "$out/$name.log" 2>&1; then :; else status=1; echo "FAILED: $name" | tee -a "$out/engine.log"; fi
  grep -vE '^\s*$|\[[0-9:]+\]' "$out/$name.log" | tail -8 | tee -a "$out/engine.log"
}
copy_gbps=3000
# The issue's workloads: nano-vllm's throughput shape and batch-1 latency (Llama-3-8B).
nano=(--load-format dummy --max-model-len 2048 --max-num-seqs 256 --max-num-batched-tokens 8192
  --num-seqs 256 --min-input-len 100 --max-input-len 1024 --min-output-len 100 --max-output-len 1024)
lat1=(--model "$cfg/llama-3-8b" --load-format dummy --max-model-len 1024 --max-num-seqs 8 --batch-size 1
  --input-len 128 --output-len 256 --iters 5)
for p in "${parts[@]}"; do
  case $p in
    copy)
      # Device-to-device copy of 1 GiB, bytes read + written (the roofline's bandwidth).
      python3 - > "$out/copy.log" 2>&1 <<'PY'
import torch
a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda"); b = torch.empty_like(a)
for _ in range(3): b.copy_(a)
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
ts = []
for _ in range(20):
    s.record(); b.copy_(a); e.record(); e.synchronize(); ts.append(s.elapsed_time(e) / 1e3)
ts.sort(); print(f"{2 * (1 << 30) / ts[len(ts) // 2] / 1e9:.0f}")
PY
      copy_gbps=$(tail -1 "$out/copy.log")
      echo "== copy bandwidth (1 GiB d2d, read + write): $copy_gbps GB/s" | tee -a "$out/engine.log" ;;
    gemv)
      # cuBLAS (through torch) at one token on the Llama-3-8B products: GB/s of weights read.
      python3 - > "$out/gemv.log" 2>&1 <<'PY'
import torch
for n, k in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (128256, 4096)]:
    ws = [torch.randn(n, k, dtype=torch.bfloat16, device="cuda") for _ in range(4)]
    x = torch.randn(1, k, dtype=torch.bfloat16, device="cuda")
    for w in ws: x @ w.t()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for i in range(200): x @ ws[i % 4].t()
    e.record(); e.synchronize()
    t = s.elapsed_time(e) / 200 / 1e3
    print(f"gemv 1 x {k} . {n} x {k}^T bf16: {t*1e6:.1f} us, {n*k*2/t/1e9:.0f} GB/s of weights")
PY
      cat "$out/gemv.log" | tee -a "$out/engine.log" ;;
    products)
      # The decode-time products at the graphs' batch sizes: cuBLAS against sm90_gemm, then
      # PyTorch on the same shapes.
      run "products" "$here/bin/products" --json "$out/products.json"
      run "products-torch" python3 "$here/benches/torch_products.py" --json "$out/products-torch.json" ;;
    sm90)
      # The nano-vllm shape with cuBLAS alone (default) and with the Hopper products routed
      # where start-up timing finds them faster (VLLM_SM90_GEMM=1).
      for m in qwen3-0.6b llama-3-8b; do
        for mode in cublas sm90; do
          sw=1; [ $mode = cublas ] && sw=0
          VLLM_SM90_GEMM=$sw VLLM_STEP_TIMING=1 run "throughput-$m-$mode" "$vllm" bench throughput --model "$cfg/$m" "${nano[@]}"
        done
      done ;;
    latency)
      for mode in graphs eager; do
        flag=(); [ $mode = eager ] && flag=(--enforce-eager)
        VLLM_STEP_TIMING=1 run "latency-llama-3-8b-$mode" "$vllm" bench latency "${lat1[@]}" \
          --roofline-gbps "$copy_gbps" "${flag[@]}"
      done ;;
    throughput)
      for m in qwen3-0.6b llama-3-8b llama-3-8b:fp8; do
        kv=auto; [ "${m#*:}" = fp8 ] && kv=fp8
        VLLM_STEP_TIMING=1 run "throughput-${m/:/-kv-}" "$vllm" bench throughput --model "$cfg/${m%:*}" "${nano[@]}" \
          --kv-cache-dtype $kv
      done ;;
    async)
      # Async scheduling (plan and launch step N+1 while the GPU computes step N) against one
      # step at a time, back to back in the same call: the nano-vllm shape and batch-1 latency.
      for m in qwen3-0.6b llama-3-8b; do
        for mode in sync async; do
          flag=(--no-async-scheduling); [ $mode = async ] && flag=(--async-scheduling)
          VLLM_STEP_TIMING=1 run "throughput-$m-$mode" "$vllm" bench throughput --model "$cfg/$m" "${nano[@]}" "${flag[@]}"
        done
      done
      for mode in sync async; do
        flag=(--no-async-scheduling); [ $mode = async ] && flag=(--async-scheduling)
        VLLM_STEP_TIMING=1 run "latency-llama-3-8b-graphs-$mode" "$vllm" bench latency "${lat1[@]}" \
          --roofline-gbps "$copy_gbps" "${flag[@]}"
      done ;;
    capi)
      # The C ABI's GPU options (dtype, FP8 KV cache, eager, async scheduling) through libvllm.
      run "capi-gpu-params" "$here/bin/gpu_params" "$cfg/qwen3-0.6b" --require-gpu ;;
    phases)
      # Where a decode step's GPU time goes: eager steps with an event after every op.
      VLLM_STEP_TIMING=1 VLLM_PHASE_TIMING=1 run "phases-llama-3-8b" "$vllm" bench throughput --model "$cfg/llama-3-8b" \
        "${nano[@]}" --enforce-eager ;;
    sampling)
      # The nano-vllm shape with top-k 50 / top-p 0.9 drawn on the GPU.
      VLLM_STEP_TIMING=1 run "throughput-llama-3-8b-topk-topp" "$vllm" bench throughput --model "$cfg/llama-3-8b" \
        "${nano[@]}" --top-k 50 --top-p 0.9 ;;
    soak)
      # 5,000 requests through a small KV cache (preemptions), GPU memory at start and end.
      run "soak-qwen3-0.6b" "$vllm" bench throughput --model "$cfg/qwen3-0.6b" --load-format dummy \
        --max-model-len 1024 --max-num-seqs 256 --max-num-batched-tokens 4096 --num-kv-blocks 2048 \
        --num-seqs 5000 --min-input-len 20 --max-input-len 200 --min-output-len 20 --max-output-len 200 --seed 1 ;;
    hf-latency)
      run "hf-latency-llama-3-8b" python3 "$here/benches/hf_generate.py" latency --config "$cfg/llama-3-8b" \
        --batch 1 --input-len 128 --output-len 256 --iters 3 ;;
    hf-throughput)
      for m in qwen3-0.6b llama-3-8b; do
        run "hf-throughput-$m" python3 "$here/benches/hf_generate.py" throughput --config "$cfg/$m" \
          --num-seqs 256 --min-len 100 --max-len 1024 --batch 64 --limit-s "${HF_LIMIT_S:-120}"
      done ;;
    *) echo "unknown part $p"; status=1 ;;
  esac
done
exit $status
