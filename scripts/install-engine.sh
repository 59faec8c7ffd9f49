#!/usr/bin/env bash
# Install the local engine, llama-cpp-python, into the project's virtual environment, then prove
# that it runs. Used by `make local` and by CI (.ci/run).
#
# Why a script: the default source build of llama.cpp enables every instruction the CPU *lists*
# (GGML_NATIVE), and on some virtual machines that includes AMX tile instructions the VM does not
# allow: the engine then dies with SIGILL at its first matrix multiply, long after a "successful"
# install. So the wheel is built once with portable AVX2 flags, kept in a cache folder whose name
# is a hash of everything that changes the binary (version, flags, Python, platform, libc,
# compiler), installed from there on later runs, and smoke-tested in a subprocess (load the 135M
# model, generate a few tokens) so a bad build fails here, loudly, and never later.
#
# Usage: scripts/install-engine.sh [--check] [PYTHON]   (default: .venv/bin/python)
#   --check: only the smoke test of the engine already installed (no build, no install).
# Environment: PONDER_WHEEL_CACHE (default .cache/wheels), PONDER_MODELS_DIR (the smoke model).
set -euo pipefail
cd "$(dirname "$0")/.."

check_only=0
if [ "${1:-}" = "--check" ]; then
    check_only=1
    shift
fi
PY="${1:-.venv/bin/python}"
VERSION="0.3.36"
FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
CACHE_ROOT="${PONDER_WHEEL_CACHE:-.cache/wheels}"
SMOKE_MODEL="smollm2-135m"

die() {
    echo "error: $*" >&2
    exit 1
}

[ -x "$PY" ] || die "no Python at $PY (run \`make\` first, or pass the venv's python)"

# --- the cache key: everything that changes the compiled library ----------------------------
target=$("$PY" -c 'import sys, sysconfig; print(f"{sys.implementation.name}{sys.version_info[0]}{sys.version_info[1]}-{sysconfig.get_platform()}")')
libc=$("$PY" -c 'import platform; print("-".join(platform.libc_ver()))')
compiler=$( (c++ --version 2>/dev/null || echo "no-c++") | head -n1)
key_text=$(printf '%s\n' "llama-cpp-python==$VERSION" "CMAKE_ARGS=$FLAGS" "python=$target" \
    "libc=$libc" "compiler=$compiler")
key=$(printf '%s' "$key_text" | sha256sum | cut -c1-16)
cache="$CACHE_ROOT/llama-cpp-python-$VERSION-$key"

wheel_in_cache() {
    [ -d "$cache" ] || return 0
    find "$cache" -maxdepth 1 -name 'llama_cpp_python-*.whl' 2>/dev/null | sort | head -n1
}

# --- build once -----------------------------------------------------------------------------
wheel=$(wheel_in_cache)
if [ "$check_only" -eq 1 ]; then
    wheel="${wheel:-(no cached wheel for this key)}"
elif [ -z "$wheel" ]; then
    mkdir -p "$CACHE_ROOT"
    build=$(mktemp -d "$CACHE_ROOT/.build-XXXXXX")
    chmod 755 "$build" # mktemp makes it private; the cache is for every user of the clone
    trap 'rm -rf "$build"' EXIT
    echo "engine: building llama-cpp-python $VERSION with portable flags (about 8-10 min on 2 cores)"
    echo "engine: cache $cache"
    start=$SECONDS
    # --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS and would silently reuse a bad build.
    # --no-binary: always our own build, never a prebuilt wheel compiled for another CPU.
    if ! CMAKE_ARGS="$FLAGS" FORCE_CMAKE=1 \
        CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
        "$PY" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
        --disable-pip-version-check --quiet -w "$build" "llama-cpp-python==$VERSION" \
        >"$build/build.log" 2>&1; then
        tail -n 30 "$build/build.log" >&2
        die "building llama-cpp-python $VERSION failed (log above); it needs a C++ compiler and cmake"
    fi
    printf '%s\n' "$key_text" >"$build/KEY"
    # Atomic publish: a half-built folder never carries the cache name.
    if ! mv -T "$build" "$cache" 2>/dev/null; then
        echo "engine: another run filled $cache meanwhile; using that one"
    fi
    trap - EXIT
    rm -rf "$build"
    echo "engine: built in $((SECONDS - start)) s"
    wheel=$(wheel_in_cache)
    [ -n "$wheel" ] || die "the build left no wheel in $cache"
else
    echo "engine: reusing the cached wheel $wheel"
fi

# --- install from the cache (skipped when exactly this wheel is already installed) ----------
if [ "$check_only" -eq 1 ]; then
    echo "engine: checking the installed engine only"
elif wheel=$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel") &&
    "$PY" - "$VERSION" "$wheel" <<'EOF'; then
import hashlib
import importlib.metadata as md
import json
import sys

version, wheel = sys.argv[1], sys.argv[2]
try:
    dist = md.distribution("llama-cpp-python")
except md.PackageNotFoundError:
    sys.exit(1)
# pip records the sha256 of the wheel file it installed from: same bytes, nothing to do.
info = json.loads(dist.read_text("direct_url.json") or "{}").get("archive_info", {})
installed = info.get("hashes", {}).get("sha256")
with open(wheel, "rb") as fh:
    ours = hashlib.file_digest(fh, "sha256").hexdigest()
sys.exit(0 if dist.version == version and installed == ours else 1)
EOF
    echo "engine: llama-cpp-python $VERSION already installed from this very wheel (same sha256)"
else
    echo "engine: installing $(basename "$wheel") and the server extras"
    "$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"
    # Dependencies and the [server] extra (uvicorn, fastapi, sse-starlette, ...) from the registry.
    "$PY" -m pip install --quiet --disable-pip-version-check "${wheel}[server]"
fi

# --- smoke test in a subprocess: a crash here, not in the middle of a sweep ------------------
"$PY" -m ponder models pull "$SMOKE_MODEL" --no-progress
model=$("$PY" -c "from ponder import paths; print(paths.models_dir() / '$SMOKE_MODEL.gguf')")
set +e
smoke=$(timeout 600 "$PY" - "$model" 2>&1 <<'EOF'
import sys

import llama_cpp

llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
out = llm("Count: 1, 2, 3,", max_tokens=4, temperature=0.0)
tokens = out["usage"]["completion_tokens"]
assert tokens > 0, out
print(f"llama-cpp-python {llama_cpp.__version__}: generated {tokens} tokens")
EOF
)
rc=$?
set -e
if [ "$rc" -eq 0 ]; then
    echo "engine: smoke test passed ($(printf '%s' "$smoke" | tail -n1))"
    exit 0
fi
printf '%s\n' "$smoke" | tail -n 20 >&2
if [ "$rc" -eq 132 ]; then  # 128 + SIGILL (4)
    die "the llama.cpp engine crashed with SIGILL (illegal instruction) on its first matrix \
multiply: the wheel was built for CPU instructions this machine does not allow. Cached wheel: \
$wheel (CMAKE_ARGS=$FLAGS). Delete $cache and run \`make local\` again; if it crashes again, \
change FLAGS in scripts/install-engine.sh (see docs/models.md)."
fi
[ "$rc" -eq 124 ] && die "the llama.cpp engine smoke test hung for 10 min with the wheel $wheel \
on $model; delete $cache to rebuild (see docs/models.md)"
die "the llama.cpp engine smoke test failed (exit $rc, output above) with the wheel $wheel \
(CMAKE_ARGS=$FLAGS) on $model; delete $cache to rebuild (see docs/models.md)"
