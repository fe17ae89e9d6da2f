#!/usr/bin/env bash
# The gateways' own client libraries, for the tests that load `llm-cost-exporter prices export`'s
# files with them (tests/test_chargeback.py), in venvs of their own under .tools/gateway-clients/
# (git-ignored): litellm brings ~300 MB of dependencies (openai, tokenizers, pydantic, ...) that the
# exporter does not need and must not pin; and the three cannot share one: litellm needs openai >= 2.20
# where openlit 1.34 needs openai < 2 and an OpenTelemetry API that still has `_events` (<= 1.37),
# while langfuse 5 needs OpenTelemetry >= 1.45. So one venv each:
#   .tools/gateway-clients/litellm    litellm
#   .tools/gateway-clients/langfuse   langfuse
#   .tools/gateway-clients/openlit    openlit, OpenTelemetry pinned to 1.37
# Only PyPI is used. Idempotent: returns at once when the pinned sets are installed.
# (litellm 1.107.0 was a compromised release: never use it.)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=.tools/gateway-clients

install() {  # NAME MODULE PINS...
  local name=$1 module=$2 venv="$ROOT/$1"
  shift 2
  local stamp="$venv/.pins-$(echo "$*" | sha1sum | cut -c1-12)"
  [ -e "$stamp" ] && [ -x "$venv/bin/python" ] && return 0
  rm -rf "$venv"
  mkdir -p "$ROOT"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true
  LITELLM_LOCAL_MODEL_COST_MAP=True "$venv/bin/python" -c "import $module" || { echo "install-gateway-clients: $* did not install into $venv" >&2; exit 1; }
  touch "$stamp"
}

install litellm litellm litellm==1.110.2
install langfuse langfuse langfuse==5.2.0
install openlit openlit.__helpers openlit==1.34.43 opentelemetry-api==1.37.0 opentelemetry-sdk==1.37.0 \
  opentelemetry-exporter-otlp==1.37.0 opentelemetry-instrumentation==0.58b0 opentelemetry-semantic-conventions==0.58b0
