#!/usr/bin/env bash
# Installs what coppice needs to build and test, from Debian's packages only. Idempotent.
set -euo pipefail
pkgs=(build-essential cmake ninja-build ccache pkg-config
      libgtest-dev libgmock-dev libbenchmark-dev
      nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev
      libcurl4-openssl-dev libcpp-httplib-dev libssl-dev
      clang-14 libclang-rt-14-dev python3 python3-numpy python3-jinja2
      g++-aarch64-linux-gnu qemu-user)  # the NEON kernels: cross build + tests (test_neon.sh)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup: all packages present"
# The OpenAI JavaScript client for tests/js, pinned by its package-lock.json (npm registry only).
# Skipped when node_modules is already newer than the lock file.
js="$(cd "$(dirname "$0")/.." && pwd)/tests/js"
if command -v npm >/dev/null 2>&1 && [ -f "$js/package-lock.json" ]; then
  if [ ! -f "$js/node_modules/.package-lock.json" ] || [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
    (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  echo "setup: tests/js dependencies present"
fi
