#!/usr/bin/env bash
# Builds the project and runs the disk-read benchmark (our VMDK reader next to
# qemu-img convert). The 2 GiB source disk and its VMDKs are cached in
# .cache/bench; the first run spends a few minutes making them.
# Usage: bash benchmarks/disk-read.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
node dist/benchmarks/disk-read.js "$@"
