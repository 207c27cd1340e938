#!/usr/bin/env bash
# The checks that need a GPU, in one run: the CUDA tests, the GPU layer-speed table and
# the GPU estimator-speed table. Run from the repository root on a machine with CUDA:
#
#     bash benchmarks/gpu_checks.sh [COPY_RESULTS_TO]
#
# Results go to benchmarks/results/ (layer_speed_gpu.*, estimator_speed_gpu.*) and, if
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
    timeout 240 python3 -m pytest tests -q -p no:cacheprovider -k cuda $workers -rs
    echo "pytest exit status: $?"

    echo "== layer speed"
    timeout 330 python3 benchmarks/layer_speed.py --device cuda --threads 16 --repeats 7
    echo "layer_speed exit status: $?"

    echo "== estimator speed"
    timeout 150 python3 benchmarks/estimator_speed.py --device cuda --threads 16 --repeats 3
    echo "estimator_speed exit status: $?"
} 2>&1 | tee "$log"
if [ -n "$dest" ]; then
    cp benchmarks/results/*_gpu.* "$log" "$dest"/ 2>/dev/null
fi
