#!/usr/bin/env bash
# Renders the HTML report of a demo database in headless Chromium (Debian's `chromium`) and
# saves a screenshot: docs/report.png is made this way. Skips, with a message, without a browser.
set -euo pipefail
cd "$(dirname "$0")/.."
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "skipping: no chromium installed (apt-get install chromium)"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo run --release --quiet -- --db "$work/demo.db" demo --runs "${RUNS:-2000}" > /dev/null
cargo run --release --quiet -- --db "$work/demo.db" report --format html --out "$work/report.html"
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --window-size=1200,1900 \
  --screenshot="${OUT:-docs/report.png}" "file://$work/report.html" 2> /dev/null
echo "wrote ${OUT:-docs/report.png}"
