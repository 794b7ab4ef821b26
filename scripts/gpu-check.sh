#!/usr/bin/env bash
# The CUDA path on a real GPU, in two halves.
#
#   bash scripts/gpu-check.sh build   here (nvcc, no GPU needed): builds into build-gpu/ the test
#                                     program, the command and the load benchmark for sm_90
#                                     (Hopper) and sm_80, and gathers them stripped, with the
#                                     libraries a bare machine lacks (libdeflate, libzstd), in
#                                     build-gpu/carry (about 11 MiB); PTHIO_GPU_ASAN=1 adds
#                                     build-gpu-asan/carry (the tests under AddressSanitizer).
#   bash scripts/gpu-check.sh run     on the GPU machine, from the repository root, with
#                                     build-gpu/carry (and build-gpu-asan/carry) carried; writes
#                                     its logs to $OUT (or ./gpu-check-out) and ends with a
#                                     summary table. PTHIO_GPU_CHECK_MIB="1024 4096" (the
#                                     default) sets the benchmark's file sizes.
#
# The run, in this order, each step time-boxed so the whole stays under 8 minutes:
#   1. the GPU, driver and CUDA runtime (nvidia-smi, the libraries found);
#   2. every CUDA and DLPack test case, with PTHIO_TESTS_REQUIRE_CUDA=1 (no device is a failure);
#   3. the same under compute-sanitizer --tool memcheck;
#   4. the load that fails midway, under AddressSanitizer (build-gpu-asan, when carried);
#   5. tests/gpu_torch.py: files torch saves on cuda:0, loaded and converted by pthio on cuda:0,
#      compared with torch;
#   6. pthio_bench_cuda_load on 1 GiB and 4 GiB (eager, mmap, staging variants) beside pinned
#      cudaMemcpy, and torch.load(map_location="cuda:0") of the same files.
# The machine reaches no package registry: the CUDA runtime and cuBLAS are the machine's own
# (its toolkit or the nvidia-* wheels beside its torch), found through LD_LIBRARY_PATH.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}

if [ "$mode" = build ]; then
  set -e
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache
                                           -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DPTHIO_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="80;90" -DPTHIO_MINILM_NATIVE=OFF "${launcher[@]}" >/dev/null
  cmake --build build-gpu --target pthio_tests pthio_cli pthio_bench_cuda_load
  # What travels: build-gpu/carry (a few MiB; the whole build folder is ten times that).
  rm -rf build-gpu/carry
  mkdir -p build-gpu/carry/lib
  cp build-gpu/tests/pthio_tests build-gpu/pthio build-gpu/pthio_bench_cuda_load build-gpu/carry/
  strip build-gpu/carry/pthio_tests build-gpu/carry/pthio build-gpu/carry/pthio_bench_cuda_load
  for lib in libdeflate.so.0 libzstd.so.1; do
    cp -L "$(ldd build-gpu/pthio | awk -v l="$lib" '$1 == l {print $3}')" build-gpu/carry/lib/
  done
  if [ "${PTHIO_GPU_ASAN:-0}" = 1 ]; then
    cmake -S . -B build-gpu-asan -G Ninja -DCMAKE_BUILD_TYPE=Release -DPTHIO_CUDA=ON \
      -DPTHIO_SANITIZE=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DPTHIO_MINILM_NATIVE=OFF \
      "${launcher[@]}" >/dev/null
    cmake --build build-gpu-asan --target pthio_tests
    rm -rf build-gpu-asan/carry
    mkdir -p build-gpu-asan/carry
    cp build-gpu-asan/tests/pthio_tests build-gpu-asan/carry/
    strip build-gpu-asan/carry/pthio_tests
    # The sanitizer runtimes, which a bare machine may lack.
    mkdir -p build-gpu-asan/carry/lib
    ldd build-gpu-asan/tests/pthio_tests | awk '$1 ~ /^lib(asan|ubsan)/ {print $3}' |
      xargs -r -I{} cp -L {} build-gpu-asan/carry/lib/
  fi
  du -sh build-gpu/carry build-gpu-asan/carry 2>/dev/null || true
  echo "gpu-check: carry build-gpu/carry (and build-gpu-asan/carry), then run:" \
    "bash scripts/gpu-check.sh run"
  exit 0
fi

if [ "$mode" != run ]; then
  echo "usage: bash scripts/gpu-check.sh build|run" >&2
  exit 2
fi

out=${OUT:-$PWD/gpu-check-out}
mkdir -p "$out"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# The machine's CUDA libraries: the nvidia-* wheels of its python3's torch first (so that torch,
# in the Python steps, finds its own), then its toolkit, then what was carried.
py=$(command -v python3 || true)
bin=$PWD/build-gpu/carry
libs=""
if [ -n "$py" ]; then
  site=$("$py" -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null || true)
  for d in "$site"/nvidia/*/lib "$site"/nvidia/*/*/lib; do [ -d "$d" ] && libs=$libs:$d; done
fi
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && libs=$libs:$d
done
libs=${libs#:}:$bin/lib:$PWD/build-gpu-asan/carry/lib
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$PATH:/usr/local/cuda/bin  # compute-sanitizer
export PTHIO_FIXTURES_DIR=$PWD/fixtures PTHIO_TESTS_REQUIRE_CUDA=1
tests=$bin/pthio_tests
cases='-ts=cuda'  # the cuda suite: test_cuda.cpp and the GPU case of test_dlpack.cpp
declare -a rows

budget=${PTHIO_GPU_CHECK_SECONDS:-470}  # the whole run, so that it ends inside an 8-minute lease
# step KIND NAME SECONDS LOG COMMAND...: runs it time-boxed, records its verdict and time. KIND
# test: a failure fails the run; bench: a benchmark cut short by the budget is "not run" and does
# not (its log says how far it got).
step() {
  local kind=$1 name=$2 limit=$3 log=$4
  shift 4
  local t0=$SECONDS rc left=$((budget - SECONDS))
  if [ $left -lt 20 ]; then
    local v="FAIL (no time left)"
    [ "$kind" = bench ] && v="not run (no time left)"
    rows+=("$(printf '%-44s %-26s' "$name" "$v")")
    return
  fi
  [ "$limit" -gt $left ] && limit=$left
  echo "== $name" | tee -a "$out/summary.txt"
  timeout "$limit" "$@" >"$out/$log" 2>&1
  rc=$?
  tail -n 15 "$out/$log"
  local verdict=pass
  if [ $rc -ne 0 ]; then
    verdict="FAIL (exit $rc$([ $rc = 124 ] && echo ', timed out'))"
    [ "$kind" = bench ] && [ $rc = 124 ] && verdict="cut short (time)"
  fi
  rows+=("$(printf '%-44s %-26s %4ss' "$name" "$verdict" $((SECONDS - t0)))")
}

{
  echo "== machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv
  ldd "$tests" | grep -E 'cudart|cublas|deflate|zstd'
  nproc
} 2>&1 | tee "$out/machine.txt"

step test "CUDA + DLPack tests, REQUIRE_CUDA=1" 90 tests.log "$tests" "$cases"
if command -v compute-sanitizer >/dev/null; then
  step test "the same under compute-sanitizer memcheck" 180 memcheck.log \
    compute-sanitizer --tool memcheck --leak-check no --error-exitcode 99 "$tests" "$cases"
  # Some runtimes refuse the tool itself (gVisor: "Device not supported"): not pthio's failure.
  if grep -q "Device not supported" "$out/memcheck.log"; then
    unset 'rows[-1]'
    rows+=("$(printf '%-44s %-26s' "the same under compute-sanitizer memcheck" "not run (device refused)")")
  fi
else
  rows+=("$(printf '%-44s %-26s' "the same under compute-sanitizer memcheck" "not run (no tool)")")
fi
if [ -x build-gpu-asan/carry/pthio_tests ]; then
  # protect_shadow_gap=0: the CUDA driver maps memory where ASan keeps its shadow gap.
  step test "a load failing midway, under ASan" 60 asan.log env \
    ASAN_OPTIONS=protect_shadow_gap=0:detect_leaks=0 build-gpu-asan/carry/pthio_tests \
    "-tc=*fails midway*,*pinned buffers*,*many threads*"
fi
if [ -n "$py" ]; then
  step test "torch saves on cuda:0, pthio loads there" 90 gpu_torch.log env PYTHONUNBUFFERED=1 \
    "$py" tests/gpu_torch.py "$bin/pthio" "$scratch/torch"
fi

bench() {  # the load benchmark on a file of N MiB, each variant; torch.load beside it
  local mib=$1 file=$scratch/bench_$1.pth failed=0
  "$py" - "$file" "$mib" <<'PY'
import sys, time, torch
path, mib = sys.argv[1], int(sys.argv[2])
g = torch.Generator().manual_seed(0)
n = mib * (1 << 20) // 4 // 64
torch.save({f"t{i}": torch.randn(n, generator=g) for i in range(64)}, path)
with open(path, "rb") as f:
    while f.read(1 << 24):
        pass
times = []
for weights_only in (True, False):
    best = []
    for _ in range(3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        sd = torch.load(path, map_location="cuda:0", weights_only=weights_only)
        torch.cuda.synchronize()
        best.append(time.perf_counter() - t0)
        del sd
    best.sort()
    gb = mib * (1 << 20) / 1e9
    print(f"torch.load(map_location='cuda:0', weights_only={weights_only}): median "
          f"{best[1] * 1e3:.0f} ms, {gb / best[1]:.2f} GB/s")
PY
  [ $? -eq 0 ] || failed=1
  for args in "" "--pread" "--mmap" "--no-crc" "--staging 8x8" "--staging 8x8 --pread" \
    "--staging 4x32" "--mmap --staging 8x16"; do
    echo "-- pthio_bench_cuda_load $file $args"
    # shellcheck disable=SC2086
    "$bin/pthio_bench_cuda_load" "$file" --repeat 5 $args || failed=1
  done
  rm -f "$file"
  return $failed
}
export scratch py bin
if [ -n "$py" ]; then
  for mib in ${PTHIO_GPU_CHECK_MIB:-1024 4096}; do
    step bench "load $mib MiB to cuda:0 (pthio, torch, memcpy)" $((40 + mib / 25)) "bench_$mib.log" \
      bash -c "$(declare -f bench); bench $mib"
  done
fi

{
  echo
  echo "gpu-check summary ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1))"
  printf '%s\n' "${rows[@]}"
  echo "-- load rates (GB/s)"
  grep -hE "^(checkpoint|pthio|pinned|pageable|torch)" "$out"/bench_*.log 2>/dev/null | cut -c1-150
} | tee -a "$out/summary.txt"
for r in "${rows[@]}"; do
  case "$r" in *FAIL*) exit 1 ;; esac
done
