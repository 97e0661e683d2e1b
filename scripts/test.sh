#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
npm run --silent build
mkdir -p .cache
report=.cache/vitest-report.json
rm -f "$report"
rc=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || rc=$?
# one plain closing line that any CI can read
if [ -f "$report" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
  ' "$report"
fi
exit "$rc"
