#!/usr/bin/env bash
# The gateways' own client libraries, for the tests that load `llm-cost-exporter prices export`'s
# files with them (tests/test_chargeback.py): a venv of its own under .tools/gateway-clients
# (git-ignored), because litellm brings ~300 MB of dependencies (openai, tokenizers, pydantic, ...)
# that the exporter does not need and must not pin. Only PyPI is used. Idempotent: returns at once
# when the pinned set is installed. (litellm 1.107.0 was a compromised release: never use it.)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.tools/gateway-clients
PINS="litellm==1.110.2"
stamp="$VENV/.pins-$(echo "$PINS" | sha1sum | cut -c1-12)"
[ -e "$stamp" ] && [ -x "$VENV/bin/python" ] && exit 0
rm -rf "$VENV"
mkdir -p .tools
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PINS 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c 'import litellm' || { echo "install-gateway-clients: litellm did not install into $VENV" >&2; exit 1; }
touch "$stamp"
