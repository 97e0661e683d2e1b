#!/usr/bin/env bash
# The README's first command: builds a sample disk with real tools and shows what vdbak sees in it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || bash scripts/ensure-deps.sh
bash scripts/ensure-deps.sh --no-npm
npm run --silent build
exec node dist/agent/demo.js "$@"
