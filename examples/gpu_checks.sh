#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run: the Triton kernels' tests on the device, the
# Triton layer against the eager one (`bench_triton.py`), and the whole circuit beside libcirkit
# and pyjuice (`benchmark.py --device cuda`). Logs and JSON go to $OUT (default
# bench-results/gpu). On a machine without a package index, put wheels of libcirkit 0.3.1,
# pyjuice 2.6.3 and graphviz in $WHEELS (default .whl): they are installed under /tmp/site.
#
#     bash examples/gpu_checks.sh      # UNITS=4,32 LAYER_ARGS="--sweep --repeats 100" by default
#     UNITS=4,32,64 LAYER_ARGS="--circuit" bash examples/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-results/gpu}"
WHEELS="${WHEELS:-.whl}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$WHEELS"/*.whl \
        && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used,memory.total --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
# SIGINT, so that the benchmarks' `finally` still prints and saves what they measured.
timeout -s INT "${TEST_TIMEOUT:-150}" python3 -m pytest -q -p no:cacheprovider -x \
    tests/test_triton_*.py 2>&1 | tee "$OUT/tests.log"
# shellcheck disable=SC2086 # the arguments are words
timeout -s INT "${LAYER_TIMEOUT:-90}" python3 examples/bench_triton.py ${LAYER_ARGS:---sweep --repeats 100} \
    2>&1 | tee "$OUT/bench_triton.log"
timeout -s INT "${BENCH_TIMEOUT:-240}" python3 examples/benchmark.py --device cuda \
    --units "${UNITS:-4,32}" --repeats 5 --json "$OUT/benchmark_gpu.json" 2>&1 \
    | tee "$OUT/benchmark_gpu.log"
