# Sourced by scripts/demo and scripts/test: make .venv (Python >= 3.10) and install the project.
# Usage: setup_venv EXTRAS   (e.g. "" or "[test]")
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

setup_venv() {
  local extras=$1 venv=${VENV:-.venv}
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "llm-cost-exporter needs Python >= 3.10 (python3 is $(python3 -V 2>&1))" >&2; exit 1; }
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
  fi
  # Re-install only when the dependencies changed; --no-compile skips byte-compiling the large
  # kubernetes client up front (it is imported lazily anyway).
  local stamp="$venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)${extras//[^a-z]/}"
  if [ ! -e "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile -e ".$extras" 2>&1 \
      | grep -v "^WARNING: Location" || true
    "$venv/bin/python" -c 'import exporter' || { echo "install into $venv failed" >&2; exit 1; }
    touch "$stamp"
  fi
}
