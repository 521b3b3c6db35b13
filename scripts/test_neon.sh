#!/usr/bin/env bash
# The NEON (AArch64) kernels: cross-builds util, kernels and ops with their ISA tests using
# Debian's g++-aarch64-linux-gnu (warnings are errors), then runs the tests under qemu-aarch64.
# The same tests as on x86 compare every ISA table of the machine (here scalar and neon) with the
# scalar twins. Needs the packages scripts/setup.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
b=build/neon
cmake -S . -B "$b" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release -DCOPPICE_KERNELS_ONLY=ON -DCOPPICE_WERROR=ON >/dev/null
cmake --build "$b" -j "${JOBS:-$(nproc)}"
ctest --test-dir "$b" --output-on-failure -j "${JOBS:-$(nproc)}"
