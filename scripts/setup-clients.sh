#!/usr/bin/env bash
# Installs what the C, C++ and Go clients of libvllm need for `make test`: CMake, Go, pkg-config
# and valgrind, from Debian (apt-get). Idempotent: does nothing when all are present.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v go >/dev/null || need+=(golang-go)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v valgrind >/dev/null || need+=(valgrind)
command -v c++ >/dev/null || need+=(g++)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${need[*]} (apt-get)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
