#!/usr/bin/env bash
# Builds one fuzz target with clang + libFuzzer + ASan + UBSan in a separate build folder and runs
# it on its corpus for a bounded time.
#
#   tests/fuzz/run.sh TARGET SECONDS [libFuzzer options...]   fuzz for SECONDS
#   tests/fuzz/run.sh --merge TARGET                          add what was found that reaches new
#                                                             code to tests/corpus/TARGET (-merge=1),
#                                                             within MAX_KB (default 300) KiB
#   tests/fuzz/run.sh --build TARGET                          build only
#
# TARGET: zip_reader | unpickler | load | safetensors | roundtrip. Environment: BUILD (default
# build-fuzz), JOBS (parallel build jobs), NICE (default 19: fuzzing shares the machine).
# The working corpus grows in $BUILD/corpus/TARGET (seeded from tests/corpus/TARGET and the
# fixtures); crashes, leaks, timeouts and OOMs land in $BUILD/artifacts/TARGET/; each run's log,
# with libFuzzer's final stats, in $BUILD/logs/. Needs clang and libFuzzer (Debian: clang,
# libclang-rt-dev or libclang-rt-14-dev) besides scripts/deps.sh's packages.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

mode=fuzz
case "${1:-}" in
  --merge) mode=merge; shift ;;
  --build) mode=build; shift ;;
esac
target="${1:?usage: tests/fuzz/run.sh [--merge|--build] TARGET [SECONDS] [libFuzzer options]}"
shift
case "$target" in
  zip_reader) dict=zip.dict; max_len=65536 ;;
  unpickler) dict=pickle.dict; max_len=65536 ;;
  load) dict=checkpoint.dict; max_len=65536 ;;
  safetensors) dict=safetensors.dict; max_len=16384 ;;
  roundtrip) dict=checkpoint.dict; max_len=32768 ;;
  *) echo "unknown target '$target'" >&2; exit 2 ;;
esac
seconds=0
if [ "$mode" = fuzz ]; then
  seconds="${1:?SECONDS missing}"
  shift
fi

build="${BUILD:-build-fuzz}"
jobs="${JOBS:-$(nproc)}"
nice_level="${NICE:-19}"
cc="${CC:-clang}"
cxx="${CXX:-clang++}"
flags="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer -gline-tables-only"

if [ ! -f "$build/build.ninja" ]; then
  nice -n "$nice_level" cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
    -DPTHIO_FUZZ=ON -DPTHIO_CUDA=OFF -DPTHIO_BUILD_EXAMPLES=OFF -DPTHIO_INSTALL=OFF >/dev/null
fi
nice -n "$nice_level" cmake --build "$build" -j "$jobs" --target "fuzz_$target"
bin="$build/tests/fuzz_$target"
[ "$mode" = build ] && exit 0

seeds="tests/corpus/$target"
work="$build/corpus/$target"
artifacts="$build/artifacts/$target"
mkdir -p "$work" "$artifacts" "$build/logs"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
common=(-max_len="$max_len" -rss_limit_mb=2048 -timeout=10 -dict="tests/fuzz/$dict" -print_final_stats=1)

if [ "$mode" = merge ]; then
  # Adds to the committed corpus only the found inputs that reach a feature it does not reach
  # yet (libFuzzer -merge=1 with tests/corpus/TARGET as the output folder keeps what is there;
  # it tries the smallest inputs first). Then, to keep the repository small, drops the largest
  # of the added inputs (never a seed-* or regress-* file) until the folder fits MAX_KB (300).
  nice -n "$nice_level" "$bin" "${common[@]}" -merge=1 "$seeds" "$work"
  budget=$(( ${MAX_KB:-300} * 1024 ))
  total() { find "$seeds" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
  while [ "$(total)" -gt "$budget" ]; do
    largest=$(find "$seeds" -type f ! -name 'seed-*' ! -name 'regress-*' -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
    [ -n "$largest" ] || break
    rm -f "$largest"
  done
  echo "tests/corpus/$target: $(find "$seeds" -type f | wc -l) files, $(( $(total) / 1024 )) KiB"
  exit 0
fi

log="$build/logs/$target-$(date -u +%Y%m%dT%H%M%SZ).log"
echo "fuzzing $target for ${seconds}s; log $log" >&2
set +e
nice -n "$nice_level" "$bin" "${common[@]}" -max_total_time="$seconds" -artifact_prefix="$artifacts/" \
  "$@" "$work" "$seeds" 2>&1 | tee "$log" | grep -E '^#[0-9]+.*(pulse|DONE)|^stat::|ERROR|SUMMARY|^Done|artifact' >&2
status=${PIPESTATUS[0]}
set -e
echo "exit status $status; final stats:" >&2
grep -E '^#[0-9]+\s+DONE|^stat::|^Done' "$log" >&2 || true
exit "$status"
