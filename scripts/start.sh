#!/usr/bin/env bash
# The README's first command: the daemon on its embedded defaults, watching the sample volume store,
# and a short tour of how to use it. Ctrl-C stops the daemon; --tour-only stops it after the tour.
set -euo pipefail
cd "$(dirname "$0")/.."
# npm ci when the packages are missing or older than the lock file (a pull that added a dependency)
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  bash scripts/ensure-deps.sh
fi
bash scripts/ensure-deps.sh --no-npm
npm run --silent build
exec node dist/agent/start.js "$@"
