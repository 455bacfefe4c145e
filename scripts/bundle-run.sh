#!/usr/bin/env bash
# run.sh of the GPU bundle (copied there by scripts/gpu-bundle.sh). Runs every GPU test, then
# every benchmark (ours, then PyTorch's for the same shapes), writes JSON and logs to the
# results directory given as argument, and prints a summary table last.
# Needs: the NVIDIA driver, CUDA's libraries, python3 with torch. No Rust.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: run.sh RESULTS_DIR [--quick] [--only attention]}
shift
quick=
only=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=--quick ;;
    --only) only=$2; shift ;;
  esac
  shift
done
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/device.txt" 2>&1
date -u +%F > "$out/date.txt"

status=0
summary=()
for t in "$here"/tests/*; do
  name=$(basename "$t")
  # --only NAME: the test binaries whose name holds NAME.
  if [ -n "$only" ] && [[ "$name" != *"$only"* ]]; then continue; fi
  # A hung kernel must not eat the whole lease: each test binary gets 300 s.
  if timeout 300 "$t" --test-threads=1 --nocapture > "$out/test-$name.log" 2>&1; then res=PASS; else res=FAIL; status=1; fi
  counts=$(grep -E '^test result' "$out/test-$name.log" | tail -1 | sed 's/^test result: //')
  skips=$(grep -c '^SKIP' "$out/test-$name.log" || true)
  summary+=("$(printf '%-34s %-5s %s (skips: %s)' "$name" "$res" "$counts" "$skips")")
done

only_arg=()
[ -n "$only" ] && only_arg=(--only "$only")
"$here/bin/kernels" --json "$out/ours.json" $quick "${only_arg[@]}" > "$out/bench-ours.log" 2>&1 || { status=1; summary+=("bench kernels FAILED (see bench-ours.log)"); }
python3 "$here/benches/torch_kernels.py" --json "$out/torch.json" $quick "${only_arg[@]}" > "$out/bench-torch.log" 2>&1 || { status=1; summary+=("bench torch FAILED (see bench-torch.log)"); }
if [ -f "$out/ours.json" ] && [ -f "$out/torch.json" ]; then
  python3 "$here/benches/report.py" "$out/ours.json" "$out/torch.json" "$out/kernels.md" --date "$(cat "$out/date.txt")" > /dev/null
  cat "$out/kernels.md"
fi
if [ "$only" = attention ] && [ -x "$here/bin/paged_attention_tune" ]; then
  timeout 300 "$here/bin/paged_attention_tune" > "$out/tune-attention.log" 2>&1 || { status=1; summary+=("paged_attention_tune FAILED"); }
fi
if [ -x "$here/bin/vllm" ] && [ -z "$only" ]; then
  "$here/bin/vllm" demo > "$out/demo.log" 2>&1 || { status=1; summary+=("vllm demo FAILED"); }
  cat "$out/demo.log"
fi

echo
echo "== GPU bundle summary: $(cat "$out/device.txt")"
printf '%s\n' "${summary[@]}"
exit $status
