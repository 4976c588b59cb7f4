#!/usr/bin/env bash
# Runs the whole test suite (the README's `npm test`) and ends with one plain line:
#   N passed, N failed
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test || exit 1
if ! npx --no-install tsc -p tsconfig.test.json; then
  echo "type errors: fix them before the tests run" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
report=$(mktemp /tmp/aegis-vitest-XXXXXX.json)
AEGIS_JSON_REPORT="$report" npx --no-install vitest run "$@"
status=$?
node -e '
  const fs = require("fs");
  let r;
  try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch { console.log("0 passed, 1 failed"); process.exit(0); }
  const failed = r.numFailedTests + (r.numFailedTestSuites && !r.numFailedTests ? r.numFailedTestSuites : 0);
  console.log(`${r.numPassedTests} passed, ${failed} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));
' "$report"
rm -f "$report"
exit $status
