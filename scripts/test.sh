#!/usr/bin/env bash
# The whole test suite, as CI runs it: release build (warnings are errors) with every test,
# the ASan+UBSan build with every test, the AArch64 NEON kernels' tests under qemu-user, then a
# bounded libFuzzer run of the GGUF parser.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
jobs=${JOBS:-$(nproc)}
for preset in release asan; do
  echo "== build + test: $preset"
  ./scripts/build.sh "$preset"
  ctest --preset "$preset" -j "$jobs"
done
echo "== neon (aarch64 cross build, tests under qemu)"
./scripts/test_neon.sh
echo "== fuzz"
./scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
