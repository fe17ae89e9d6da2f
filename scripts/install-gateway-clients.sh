#!/usr/bin/env bash
# The gateways' own client libraries, for the tests that load `llm-cost-exporter prices export`'s
# files with them (tests/test_chargeback.py), in venvs of their own under .tools/gateway-clients/
# (git-ignored): litellm brings ~300 MB of dependencies (openai, tokenizers, pydantic, ...) that the
# exporter does not need and must not pin, and it needs openai >= 2.20 where openlit needs openai < 2,
# so two venvs:
#   .tools/gateway-clients/litellm        litellm
#   .tools/gateway-clients/observability  langfuse, openlit
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
  "$venv/bin/python" -c "import $module" || { echo "install-gateway-clients: $* did not install into $venv" >&2; exit 1; }
  touch "$stamp"
}

install litellm litellm litellm==1.110.2
install observability "langfuse, openlit" langfuse==5.2.0 openlit==1.34.43
