#!/usr/bin/env bash
# Run every paper-claim benchmark in sequence (about 50 minutes on 2 CPU cores), then
# write the claims table benchmarks/results/paper_claims.md from their results.
set -euo pipefail
cd "$(dirname "$0")/../.."
python benchmarks/paper/digits_cnn.py
python benchmarks/paper/attention.py
python benchmarks/paper/forecasting.py
python benchmarks/paper/forecasting.py --series co2
python benchmarks/paper/poisson.py
python benchmarks/paper/poisson.py --boundary reflect --out poisson_reflect
python benchmarks/paper/claims.py
