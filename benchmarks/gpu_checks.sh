#!/usr/bin/env bash
# The checks that need a GPU, in one run, most important first: the CUDA tests, the GPU
# estimator-speed table, the million-row scale run on the GPU and the GPU layer-speed
# table. At most about 9 minutes. Run from the repository root on a machine with CUDA:
#
#     bash benchmarks/gpu_checks.sh [COPY_RESULTS_TO]
#
# Results go to benchmarks/results/ (estimator_speed_gpu.*, scale_gpu.*, layer_speed_gpu.*) and, if
# a folder is given, are copied there with the log. Each step has its own time limit so
# that one slow step cannot take the others' time.
set -u
dest=${1:-}
log=benchmarks/results/gpu_checks.log
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p benchmarks/results
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, sklearn, skorch; print('torch', torch.__version__, '| scikit-learn', sklearn.__version__, '| skorch', skorch.__version__)"

    echo "== CUDA tests"
    workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8" || echo "")
    timeout 180 python3 -m pytest tests -q -p no:cacheprovider -k cuda $workers -rs
    echo "pytest exit status: $?"

    echo "== estimator speed"
    timeout 100 python3 benchmarks/estimator_speed.py --device cuda --threads 16 --repeats 3
    echo "estimator_speed exit status: $?"

    echo "== scale (a million rows; the MLP stays on the CPU)"
    timeout 120 python3 benchmarks/scale.py --device cuda --threads 16 --gmnm-batches 2000
    echo "scale exit status: $?"

    echo "== layer speed"
    timeout 150 python3 benchmarks/layer_speed.py --device cuda --threads 16 --repeats 3
    echo "layer_speed exit status: $?"
} 2>&1 | tee "$log"
if [ -n "$dest" ]; then
    cp benchmarks/results/*_gpu.* "$log" "$dest"/ 2>/dev/null
fi
