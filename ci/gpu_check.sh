#!/usr/bin/env bash
# GPU check, on a GPU machine without network (Python, numpy, onnx, onnxruntime, CuPy, torch and
# setuptools preinstalled), in this order: the probes (ci/gpu_probes.py: CuPy finds NVRTC and the
# CUDA headers, a reduction runs, a cuDNN handle; the stream race probe; the CUDA-graph capture
# checks), the CUDA-marked tests, the ONNX node suite one case per op on the CPU and on
# CUDAExecutionProvider (every kernel compiled once, not ~1,100 kernels of the whole suite), and
# benchmarks/gpu.py. Finishes in under 5 minutes (GPU_CHECK_BUDGET_S, default 285 s): the step caps
# add up to 280 s, every step runs under `timeout` (its cap or the time left), a failing step does
# not stop the others, and summary.txt is always written.
#
#   OUT=/some/dir bash ci/gpu_check.sh        # OUT defaults to ./gpu_out; PYTHON picks the interpreter
#   GPU_CHECK_BENCH_ARGS="--models bert_base --runs 50" bash ci/gpu_check.sh   # extra benchmark arguments
#
# Without a usable CUDA provider the CUDA node suite is skipped (exit 3 of node_suite.py), the
# benchmark runs its CPU parts only (--quick --batches 1), and the script still exits 0.
# Exit 1 when a step failed or timed out.
#
# Wheels in ci/wheels/ (the cuDNN frontend; pytest and its dependencies where the image lacks
# pytest) are installed first when present. They are carried to the machine, not committed: fetch
# them where there is network with `bash ci/fetch_gpu_wheels.sh`.
#
# Files in $OUT (8 at most, the GPU machine returns no more):
#   summary.txt           environment, setup log, one STEP line per step (at the end)
#   probes.txt            ci/gpu_probes.py: one PROBE line each
#   pytest-cuda.txt       python -m pytest -q -m cuda tests
#   node-suite.txt        both node-suite runs' output (one case per op)
#   node-suite-cuda.json  node suite on CUDAExecutionProvider, compared with the CPU run
#   bench.txt             benchmarks/gpu.py output
#   gpu-<card>.md         the benchmark report (also copied to benchmarks/results/)
#   gpu-bench.json        the benchmark numbers
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif command -v python3 >/dev/null; then PY=python3
else PY=python
fi
export PYTHONUNBUFFERED=1
START=$(date +%s)
DEADLINE=$((START + ${GPU_CHECK_BUDGET_S:-285}))
SUMMARY=$OUT/summary.txt
STEPS=()
: >"$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }

# record NAME STATUS SECONDS DETAIL: one summary line per step, written at the end
record() {
    local line
    line=$(printf 'STEP %-16s %-8s %4ss  %s' "$1" "$2" "$3" "$4")
    STEPS+=("$line")
    echo "$line"
}

# run_step NAME CAP_S LOG CMD...: runs CMD under timeout (the cap or the time left), output to LOG;
# sets RC and SECS
run_step() {
    local name=$1 cap=$2 log=$3 left t0
    shift 3
    left=$((DEADLINE - $(date +%s)))
    local t=$((cap < left ? cap : left))
    RC=0 SECS=0
    if ((t < 10)); then
        RC=255
        echo "== $name: skipped, ${left}s left" | tee -a "$log"
        return
    fi
    echo "== $name (timeout ${t}s): $*" | tee -a "$log"
    t0=$(date +%s)
    timeout -k 10 "$t" "$@" >>"$log" 2>&1
    RC=$?
    SECS=$(($(date +%s) - t0))
    echo "== $name: exit $RC after ${SECS}s" | tee -a "$log"
}

or_skipped() {  # the step's detail, or why it did not run
    if ((RC == 255)); then echo "not run: under 10 s of the budget left"; else echo "$1"; fi
}

status_of() {  # exit code -> OK / TIMEOUT / FAIL
    case $1 in
        0) echo OK ;;
        124 | 137) echo TIMEOUT ;;
        255) echo SKIP ;;
        *) echo FAIL ;;
    esac
}

# ---- environment (each probe guarded) --------------------------------------------------
say "# ortlite GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -srm), $(nproc) cores"
say "python: $PY ($(command -v "$PY" || echo 'not found'))"
if command -v nvidia-smi >/dev/null; then
    timeout 30 nvidia-smi 2>&1 | tee -a "$SUMMARY"
else
    say "nvidia-smi: not found"
fi
timeout 60 "$PY" - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import sys
print("Python", sys.version.split()[0], sys.executable)
for mod in ("numpy", "onnx", "onnxruntime", "cupy", "torch", "cudnn"):
    try:
        m = __import__(mod)
        print(f"{mod} {getattr(m, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001
        print(f"{mod}: not importable ({type(e).__name__}: {e})")
try:
    import cupy
    rt = cupy.cuda.runtime
    n = rt.getDeviceCount()
    print(f"cupy: {n} device(s), driver {rt.driverGetVersion()}, runtime {rt.runtimeGetVersion()}")
    for i in range(n):
        print("  ", rt.getDeviceProperties(i)["name"])
except Exception as e:  # noqa: BLE001
    print(f"cupy devices: {type(e).__name__}: {e}")
try:
    import torch
    print(f"torch CUDA {torch.version.cuda}, available {torch.cuda.is_available()}",
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception as e:  # noqa: BLE001
    print(f"torch devices: {type(e).__name__}: {e}")
EOF

# ---- setup: cuDNN frontend wheel (if carried), ortlite editable without deps ------------
say ""
say "## setup"
SETUP_LOG=$(mktemp)
t0=$(date +%s)
setup_ok=1
shopt -s nullglob
wheels=(ci/wheels/nvidia_cudnn_frontend-*.whl)
pytest_wheels=(ci/wheels/pytest-*.whl ci/wheels/pluggy-*.whl ci/wheels/iniconfig-*.whl ci/wheels/packaging-*.whl)
shopt -u nullglob
if ((${#wheels[@]})); then
    timeout 60 "$PY" -m pip install --no-deps --no-index "${wheels[@]}" >>"$SETUP_LOG" 2>&1 || setup_ok=0
else
    echo "no ci/wheels/nvidia_cudnn_frontend-*.whl: cuDNN frontend not installed from a wheel" >>"$SETUP_LOG"
fi
if ! timeout 30 "$PY" -c "import pytest" >>"$SETUP_LOG" 2>&1; then
    if ((${#pytest_wheels[@]})); then
        timeout 60 "$PY" -m pip install --no-deps --no-index "${pytest_wheels[@]}" >>"$SETUP_LOG" 2>&1 || setup_ok=0
    else
        echo "pytest is not importable and ci/wheels has no pytest wheel (bash ci/fetch_gpu_wheels.sh)" >>"$SETUP_LOG"
        setup_ok=0
    fi
fi
# --no-build-isolation: no network for setuptools; --no-deps: numpy/onnx come with the image
if ! timeout 90 "$PY" -m pip install --no-deps --no-index --no-build-isolation -e . >>"$SETUP_LOG" 2>&1; then
    # fallback: PYTHONPATH plus a finder for the package-dir mapping (providers/ -> ortlite.providers, ...)
    setup_ok=0
    SHIM=$(mktemp -d)
    cat >"$SHIM/sitecustomize.py" <<EOF
import importlib.util, sys
_MAP = {"ortlite.providers": "$ROOT/providers", "ortlite.kernels": "$ROOT/kernels"}
class _OrtliteDirs:
    def find_spec(self, name, path=None, target=None):
        d = _MAP.get(name)
        if d:
            return importlib.util.spec_from_file_location(name, d + "/__init__.py", submodule_search_locations=[d])
        return None
sys.meta_path.append(_OrtliteDirs())
EOF
    export PYTHONPATH="$ROOT:$SHIM${PYTHONPATH:+:$PYTHONPATH}"
    echo "editable install failed: using PYTHONPATH=$PYTHONPATH with a sitecustomize finder" >>"$SETUP_LOG"
fi
timeout 60 "$PY" -c "import ortlite, ortlite.providers, ortlite.kernels; print('ortlite', ortlite.__version__, 'from', ortlite.__file__); print('unavailable providers:', ortlite.get_unavailable_providers())" >>"$SETUP_LOG" 2>&1
import_rc=$?
cat "$SETUP_LOG" | tee -a "$SUMMARY"
rm -f "$SETUP_LOG"
if ((import_rc != 0)); then
    record setup FAIL $(($(date +%s) - t0)) "ortlite does not import; later steps will fail"
elif ((setup_ok)); then
    record setup OK $(($(date +%s) - t0)) "pip install --no-deps --no-index --no-build-isolation -e ."
else
    record setup WARN $(($(date +%s) - t0)) "a pip step failed (see summary.txt); ortlite imports"
fi
CUDA_OK=$(timeout 60 "$PY" -c "import ortlite; print(int('CUDAExecutionProvider' in ortlite.get_available_providers()))" 2>/dev/null || echo 0)
say "ortlite CUDAExecutionProvider available: $CUDA_OK"

# ---- probes: smoke (NVRTC, a reduction, cuDNN), stream race, CUDA-graph capture -------------------
LOG=$OUT/probes.txt
: >"$LOG"
run_step probes 60 "$LOG" "$PY" ci/gpu_probes.py
if [[ $CUDA_OK != 1 ]]; then  # no usable CUDA provider: the probes' failures say why, but fail nothing
    record probes SKIP "$SECS" "no usable CUDA provider: $(grep -m1 ' FAIL ' "$LOG" | cut -c1-160)"
else
    record probes "$(status_of $RC)" "$SECS" "$(or_skipped "rc=$RC $(grep -c ' OK ' "$LOG") ok, $(grep -c ' FAIL ' "$LOG") failed: $(grep ' FAIL ' "$LOG" | awk '{print $2}' | tr '\n' ' ')")"
fi

# ---- CUDA-marked tests ---------------------------------------------------------------------
LOG=$OUT/pytest-cuda.txt
: >"$LOG"
run_step pytest-cuda 50 "$LOG" "$PY" -m pytest -q -rfEsX -m cuda tests/cuda_provider tests/trt
last=$(grep -E '(passed|failed|skipped|deselected|error|no tests ran)' "$LOG" | tail -1)
if ((RC == 5)); then
    record pytest-cuda NONE "$SECS" "no CUDA-marked test collected: $last"
else
    record pytest-cuda "$(status_of $RC)" "$SECS" "$(or_skipped "rc=$RC $last")"
fi

# ---- TensorRT: whether it imports here (the CUDA-marked tests above ran tests/trt/test_tensorrt_device.py) ----
TRT_INFO=$(timeout 60 "$PY" -c "
import ortlite
from ortlite.providers import availability
ok, why = availability('TensorrtExecutionProvider')
try:
    import tensorrt
    v = tensorrt.__version__
except Exception as e:
    v = f'not importable ({type(e).__name__}: {e})'
print(f'tensorrt {v}; TensorrtExecutionProvider available: {ok} {why}')
" 2>&1 | tail -1)
say "$TRT_INFO"
if grep -q "available: True" <<<"$TRT_INFO"; then
    record tensorrt OK 0 "$TRT_INFO (tests in pytest-cuda.txt; benchmarks/gpu.py adds it)"
else
    record tensorrt SKIP 0 "$TRT_INFO"
fi

# ---- node suite: CPU, then CUDA compared with it ----------------------------------------
LOG=$OUT/node-suite.txt
: >"$LOG"
NS=tests/conformance/node_suite.py
JOBS=$(nproc)
((JOBS > 8)) && JOBS=8
CPU_JSON=$(mktemp --suffix .json)  # not in $OUT: the machine returns 8 files
run_step node-suite-cpu 15 "$LOG" "$PY" $NS --one-per-op --summary --jobs "$JOBS" --json "$CPU_JSON"
record node-suite-cpu "$(status_of $RC)" "$SECS" "$(or_skipped "rc=$RC $(grep -E '^[0-9]+/[0-9]+ passed' "$LOG" | tail -1)")"
cmp_args=()
[[ -s $CPU_JSON ]] && cmp_args=(--compare-with "$CPU_JSON" --min-share 0.95)
CUDA_JOBS=$((JOBS < 4 ? JOBS : 4))
run_step node-suite-cuda 60 "$LOG" "$PY" $NS --one-per-op --summary --jobs "$CUDA_JOBS" --provider CUDAExecutionProvider \
    --json "$OUT/node-suite-cuda.json" "${cmp_args[@]}"
share=$(grep -E 'of the cases that pass on' "$LOG" | tail -1)
counts=$(grep -E '^[0-9]+/[0-9]+ passed .* on CUDAExecutionProvider' "$LOG" | tail -1)
case $RC in
    3) record node-suite-cuda SKIP "$SECS" "$(grep -m1 'is unavailable' "$LOG")" ;;
    1) if [[ -n $share ]] && grep -q 'is below --min-share' "$LOG"; then
           record node-suite-cuda FAIL "$SECS" "below 95%: $share"
       else
           record node-suite-cuda FAIL "$SECS" "rc=1 $(tail -1 "$LOG")"
       fi ;;
    *) record node-suite-cuda "$(status_of $RC)" "$SECS" "$(or_skipped "rc=$RC $counts; $share")" ;;
esac

# ---- benchmark --------------------------------------------------------------------------
LOG=$OUT/bench.txt
: >"$LOG"
left=$((DEADLINE - $(date +%s)))
bench_args=(--cpu-runs 3 --budget-s $((left > 90 ? left - 60 : 30)))
if [[ $CUDA_OK != 1 ]]; then  # no GPU: the CPU parts as a smoke test only
    bench_args=(--quick --batches 1 --runs 2)
fi
# GPU_CHECK_BENCH_ARGS: extra arguments (e.g. "--models bert_base --runs 50"), word-split on purpose
# shellcheck disable=SC2206
bench_args+=(${GPU_CHECK_BENCH_ARGS:-})
run_step bench 95 "$LOG" "$PY" benchmarks/gpu.py --out-dir "$OUT" --json "$OUT/gpu-bench.json" "${bench_args[@]}"
md=$(ls -t "$OUT"/gpu-*.md 2>/dev/null | head -1)
if [[ -n $md ]]; then
    copied=""
    if [[ $(basename "$md") != gpu-no-gpu.md ]]; then  # a report without a GPU stays out of the repo
        mkdir -p benchmarks/results && cp "$md" benchmarks/results/ && copied=" (copied to benchmarks/results/)"
    fi
    record bench "$(status_of $RC)" "$SECS" "rc=$RC wrote $(basename "$md")$copied; $(grep -c '^skipped' "$LOG") part(s) skipped, $(grep -c 'ERROR' "$LOG") error line(s)"
else
    record bench "$(status_of $RC)" "$SECS" "$(or_skipped "rc=$RC no report written")"
fi

# ---- summary ------------------------------------------------------------------------------
{
    echo ""
    echo "## steps ($(($(date +%s) - START))s in all)"
    printf '%s\n' "${STEPS[@]}"
} >>"$SUMMARY"
n=$(find "$OUT" -type f | wc -l)
if ((n > 8)); then
    echo "WARNING: $n files in $OUT; the GPU machine returns 8" | tee -a "$SUMMARY"
fi
echo ""
printf '%s\n' "${STEPS[@]}"
echo "results in $OUT ($n files): $(cd "$OUT" && ls | tr '\n' ' ')"
# exit 1 when a step failed or timed out (skipped parts do not count)
if printf '%s\n' "${STEPS[@]}" | grep -qE '^STEP +[a-z-]+ +(FAIL|TIMEOUT) '; then exit 1; fi
exit 0
