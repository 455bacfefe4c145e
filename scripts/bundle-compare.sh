#!/usr/bin/env bash
# compare.sh of the GPU bundle (copied there by scripts/gpu-bundle.sh): two `vllm` binaries on the
# same workloads in the same lease, runs interleaved (A B A B ...), so a change can be held to
# "same speed". Workloads: nano-vllm's throughput shape on Llama-3-8B and Qwen3-0.6B, batch-1
# latency on Llama-3-8B (dummy weights, benches/configs).
#   compare.sh OLD_VLLM NEW_VLLM RESULTS_DIR [REPS (default 2)] [WORKLOADS: llama qwen3 latency]
# Writes one log per run (<workload>-<old|new>-<rep>.log) and prints a table: output tok/s per
# run and the median of each binary, ms per output token for latency, and new / old.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
old=${1:?usage: compare.sh OLD_VLLM NEW_VLLM RESULTS_DIR [REPS] [WORKLOADS...]}
new=${2:?}
out=${3:?}
reps=${4:-2}
shift 4 2>/dev/null || shift $#
loads=("$@")
[ ${#loads[@]} -eq 0 ] && loads=(llama qwen3 latency)
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/device.txt" 2>&1
cfg=$here/benches/configs
nano=(--load-format dummy --max-model-len 2048 --max-num-seqs 256 --max-num-batched-tokens 8192
  --num-seqs 256 --min-input-len 100 --max-input-len 1024 --min-output-len 100 --max-output-len 1024)
lat1=(--model "$cfg/llama-3-8b" --load-format dummy --max-model-len 1024 --max-num-seqs 8 --batch-size 1
  --input-len 128 --output-len 256 --iters 5)
status=0
for rep in $(seq 1 "$reps"); do
  for w in "${loads[@]}"; do
    for which in old new; do
      bin=$old; [ $which = new ] && bin=$new
      case $w in
        llama) cmd=("$bin" bench throughput --model "$cfg/llama-3-8b" "${nano[@]}") ;;
        qwen3) cmd=("$bin" bench throughput --model "$cfg/qwen3-0.6b" "${nano[@]}") ;;
        latency) cmd=("$bin" bench latency "${lat1[@]}") ;;
        *) echo "unknown workload $w"; exit 2 ;;
      esac
      log="$out/$w-$which-$rep.log"
      echo "== $w $which $rep: ${cmd[*]}" > "$log"
      VLLM_STEP_TIMING=1 timeout "${LIMIT:-300}" "${cmd[@]}" >> "$log" 2>&1 || { status=1; echo "FAILED: $log"; }
    done
  done
done
python3 - "$out" "$reps" "${loads[@]}" <<'PY'
import re, statistics, sys
out, reps, loads = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def figure(path, w):
    try:
        text = open(path).read()
    except OSError:
        return None
    pat = r"time per output token ([0-9.]+) ms" if w == "latency" else r"([0-9.]+) output tokens/s"
    m = re.search(pat, text)
    return float(m.group(1)) if m else None
print(f"{'workload':10} {'unit':14} {'old runs':>24} {'new runs':>24} {'old med':>9} {'new med':>9} {'new/old':>8}")
for w in loads:
    unit = "ms/token" if w == "latency" else "output tok/s"
    runs = {b: [figure(f"{out}/{w}-{b}-{r}.log", w) for r in range(1, reps + 1)] for b in ("old", "new")}
    fmt = lambda v: " ".join("-" if x is None else f"{x:.2f}" for x in v)
    good = {b: [x for x in v if x is not None] for b, v in runs.items()}
    if good["old"] and good["new"]:
        mo, mn = statistics.median(good["old"]), statistics.median(good["new"])
        print(f"{w:10} {unit:14} {fmt(runs['old']):>24} {fmt(runs['new']):>24} {mo:9.2f} {mn:9.2f} {mn / mo:8.4f}")
    else:
        print(f"{w:10} {unit:14} {fmt(runs['old']):>24} {fmt(runs['new']):>24}   (missing runs)")
PY
exit $status
