#!/usr/bin/env bash
# Regenerate the kubelet PodResources v1 Python stubs (api_pb2.py, api_pb2.pyi, api_pb2_grpc.py)
# from the committed proto, exporter/kube/podresources/v1/api.proto (its origin: README.md there).
#
#   scripts/gen-podresources.sh            # rewrite the committed stubs
#   scripts/gen-podresources.sh OUT_DIR    # write them under OUT_DIR instead (the test compares)
#
# The proto is compiled from the repository root, so the stubs import each other as
# exporter.kube.podresources.v1.api_pb2. The output depends on the generator's version: use the
# grpcio-tools pinned in pyproject.toml's `test` extra (PYTHON names the interpreter that has it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root}"
python="${PYTHON:-$root/.venv/bin/python}"
mkdir -p "$out"
cd "$root"
"$python" -m grpc_tools.protoc -I. --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    exporter/kube/podresources/v1/api.proto
