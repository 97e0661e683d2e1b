#!/usr/bin/env bash
# Runs every benchmark once, each next to its peer in the same run (see benchmarks/README.md).
# `npm run bench` builds first. Inputs are built once and cached in .cache/bench.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh --no-npm
for b in disk-read ext ntfs chunking; do
  echo "== $b"
  node "dist/benchmarks/$b.js" "$@"
done
# issue 5: vdbak's backup, restore and catalog next to restic and borg (benchmarks/backup.ts)
echo "== backup"
node dist/benchmarks/backup.js "$@"
# issue 6: a foreground dd alone vs with a throttled (and an unthrottled) backup on the same disk (benchmarks/throttle.ts)
echo "== throttle"
node dist/benchmarks/throttle.js "$@"
