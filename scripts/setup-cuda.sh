#!/usr/bin/env bash
# Installs the pinned CUDA toolchain (nvcc, cudart, CCCL, CUTLASS headers) from PyPI into an
# ignored folder of the repo, and libclang (for bindgen) from Debian. Idempotent: a stamp file
# records the pinned set, so a second run does nothing. Prints the paths the build uses.
#
# Usage: scripts/setup-cuda.sh            install (if needed) and print the paths
#        eval "$(scripts/setup-cuda.sh --env)"   export CUDA_HOME, CUTLASS_DIR, PATH
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/.toolchain/cuda"
pkgs=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cutlass==4.2.0.0
)
stamp="$dest/.installed"
want="${pkgs[*]}"

log() { [ "${1:-}" = "--env" ] || echo "setup-cuda: $*" >&2; }

if ! ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'; then
  log "installing libclang-dev (bindgen needs it)"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libclang-dev >&2
fi

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing ${pkgs[*]} into $dest"
  rm -rf "$dest"
  mkdir -p "$dest"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
    --target "$dest" "${pkgs[@]}" >&2
  echo "$want" > "$stamp"
fi

cuda_home="$dest/nvidia/cu13"
cutlass="$dest/cutlass_library/source"
[ -x "$cuda_home/bin/nvcc" ] || { echo "setup-cuda: nvcc missing under $cuda_home" >&2; exit 1; }
[ -d "$cutlass/include/cutlass" ] || { echo "setup-cuda: CUTLASS headers missing under $cutlass" >&2; exit 1; }

if [ "${1:-}" = "--env" ]; then
  echo "export CUDA_HOME='$cuda_home'"
  echo "export CUTLASS_DIR='$cutlass'"
  echo "export PATH='$cuda_home/bin':\"\$PATH\""
else
  echo "CUDA_HOME=$cuda_home"
  echo "CUTLASS_DIR=$cutlass"
  "$cuda_home/bin/nvcc" --version | tail -n 2
fi
