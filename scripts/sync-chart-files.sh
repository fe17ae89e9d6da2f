#!/usr/bin/env bash
# Copies the rule file and the dashboards' JSON into the Helm chart, which cannot read files outside
# its own directory: rules/llm-cost-exporter.rules.yml -> helm/llm-cost-exporter/files/ and
# dashboards/json/*.json -> helm/llm-cost-exporter/files/dashboards/ (stale copies are removed).
# Run it after regenerating the rules or the dashboards; tests/test_helm.py fails while the copies
# differ from the originals.
#   scripts/sync-chart-files.sh           copy
#   scripts/sync-chart-files.sh --check   only compare; exit 1 and list the differences
set -euo pipefail
cd "$(dirname "$0")/.."
chart_files=helm/llm-cost-exporter/files

pairs() {  # SOURCE DESTINATION, one pair a line
  echo "rules/llm-cost-exporter.rules.yml $chart_files/llm-cost-exporter.rules.yml"
  for f in dashboards/json/*.json; do echo "$f $chart_files/dashboards/$(basename "$f")"; done
}

stale() {  # chart copies of dashboards that are no longer in dashboards/json
  for f in "$chart_files"/dashboards/*.json; do
    [ -e "$f" ] && [ ! -e "dashboards/json/$(basename "$f")" ] && echo "$f"
  done
  return 0
}

if [ "${1:-}" = "--check" ]; then
  status=0
  while read -r src dst; do
    cmp -s "$src" "$dst" || { echo "differs from $src: $dst" >&2; status=1; }
  done < <(pairs)
  for f in $(stale); do echo "no original in dashboards/json: $f" >&2; status=1; done
  [ $status -eq 0 ] || echo "run scripts/sync-chart-files.sh" >&2
  exit $status
fi

mkdir -p "$chart_files/dashboards"
while read -r src dst; do cp "$src" "$dst"; done < <(pairs)
for f in $(stale); do rm -f "$f"; done
