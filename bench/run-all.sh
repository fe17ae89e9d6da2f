#!/usr/bin/env bash
# The performance figures of README's table, re-measured in one go (about 25 minutes: scrape
# latency 3 runs, overhead 3 runs of 5 minutes, engine parse), one after the other so that they do
# not load each other; rewrites bench/results/{scrape_latency,overhead,engine_parse}.json and prints
# the table (bench/table.py). Exits 1 if any target was missed (each script names its own).
#   bench/run-all.sh                       # PYTHON=... to use another interpreter than .venv's
#   bench/run-all.sh --results-dir DIR     # write elsewhere (--quick: every script at smoke size)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
status=0
echo "load before: $(uptime)"
for script in scrape_latency overhead engine_parse; do
  "$PY" "bench/$script.py" "$@" || status=1
done
echo "load after: $(uptime)"
results=()
for arg in "$@"; do
  case "$arg" in --results-dir=*) results=("$arg") ;; esac
done
"$PY" bench/table.py "${results[@]}"
exit $status
