#!/usr/bin/env bash
# The checks that need a GPU, in one run, most important first: the CUDA and Triton
# tests, the GPU layer-speed table (with where each step's time goes, the ReLU block
# and the GMNM layer as CUDA graphs: the GPU's work without the host's cost per launch,
# and the hybrid form: torch's matrix products with Triton kernels for the responses),
# the same at a million rows, and at 64 and 256 inputs the ReLU block and GMNM compiled
# with torch.compile's mode="reduce-overhead" (fused kernels run as CUDA graphs). At most
# about 9.7 minutes (run it with a 600 s limit); the layer tables are written after every
# row, so a step stopped at its time limit still leaves the rows it measured. Left out
# for time, each measured once on a GPU: the estimator-speed table (H200,
# results/estimator_speed_gpu.md) and the million-row scale run (H100,
# results/scale_gpu.md):
#     python3 benchmarks/estimator_speed.py --device cuda --threads 16 --repeats 3
#     python3 benchmarks/scale.py --device cuda --threads 16 --epochs 2
# Run from the repository root on a machine with CUDA:
#
#     bash benchmarks/gpu_checks.sh [COPY_RESULTS_TO]
#
# Results go to benchmarks/results/ (*_gpu.* and *_gpu_*.*) and, if a folder is given,
# are packed there (gpu_results.tgz) with the log. Each step has its own time limit, so
# that one slow step cannot take the others' time. If the Triton kernels fail on this
# machine, the later steps run with SKLEARN_GMNM_TRITON=0 (the torch path) and the log
# says so.
set -u
dest=${1:-}
log=benchmarks/results/gpu_checks.log
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p benchmarks/results
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, sklearn, skorch, triton; print('torch', torch.__version__, '| scikit-learn', sklearn.__version__, '| skorch', skorch.__version__, '| triton', triton.__version__)"

    echo "== CUDA and Triton tests"
    # Triton's autotuner compiles four tile settings per kernel and layer shape: spread
    # the tests over every core (on an H100 they took 74 s; on an H200, over 150 s).
    workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n 16" || echo "")
    timeout 200 python3 -m pytest tests -q -p no:cacheprovider -k "cuda or triton" $workers -rs
    echo "pytest exit status: $?"
    if ! python3 - <<'PY'
import torch
from sklearn_gmnm.nn import GMNM, _triton
layer = GMNM(4, 2).cuda()
x = torch.randn(300, 4, device="cuda")
assert _triton.supports(x, layer.weight, layer.offsets(), layer.mixture_weight, layer.bias, 2)
layer(x).sum().backward()
assert _triton._failure is None, _triton._failure  # the kernels ran: no fallback
print("Triton kernels: ok")
PY
    then
        echo "Triton kernels FAILED here: the later steps use the torch path"
        export SKLEARN_GMNM_TRITON=0
    fi

    echo "== layer speed"
    timeout 190 python3 benchmarks/layer_speed.py --device cuda --threads 16 --repeats 3
    echo "layer_speed exit status: $?"

    echo "== layer speed at a million rows (no compiled or hybrid variants): does the GPU's work or the host set the pace?"
    timeout 60 python3 benchmarks/layer_speed.py --device cuda --threads 16 --repeats 3 \
        --dims 2 16 --batches 1048576 --no-compile --no-hybrid \
        --out benchmarks/results/layer_speed_gpu_large
    echo "layer_speed (large) exit status: $?"

    echo "== reduce-overhead at 64 and 256 inputs, where GMNM's GPU work is the larger"
    timeout 120 python3 benchmarks/layer_speed.py --device cuda --threads 16 --repeats 3 \
        --dims 64 256 --batches 65536 --reduce-overhead \
        --out benchmarks/results/layer_speed_gpu_reduce_overhead
    echo "layer_speed (reduce-overhead) exit status: $?"

} 2>&1 | tee "$log"
if [ -n "$dest" ]; then
    tar czf "$dest/gpu_results.tgz" benchmarks/results/*_gpu.* \
        benchmarks/results/*_gpu_*.* "$log"
fi
