#!/bin/bash
# The front-door map (the defaults) and the objective ablation: the same pair, seeds, and test
# prompts (100 per task). Writes results/main_toy.json and results/ablation/*.json; then
# `python scripts/ablation_table.py` prints the ablation table (`python scripts/docs_tables.py` writes
# it into docs/training.md). About 10 min on one CPU thread.
cd "$(dirname "$0")/.." && export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
T="python scripts/train.py --config configs/toy.yaml --overwrite"
E="python scripts/evaluate.py --n 100"
R=checkpoints/toy-gpt2-s__toy-gpt2-l
$T
$E --map $R/holdout-capitals-s0 --json results/main_toy.json --plot runs/toy.png
$T --run abl-density-anchor10-last --objective density --anchor 10 --keep last > /dev/null 2>&1
$E --map $R/abl-density-anchor10-last --json results/ablation/density-anchor10-last.json > /dev/null 2>&1
$T --run abl-density-anchor1-best --objective density --keep best > /dev/null 2>&1
$E --map $R/abl-density-anchor1-best --json results/ablation/density-anchor1-best.json > /dev/null 2>&1
$T --run abl-curve-anchor1-last --keep last > /dev/null 2>&1
$E --map $R/abl-curve-anchor1-last --json results/ablation/curve-anchor1-last.json > /dev/null 2>&1
$T --run abl-curve-logitdiff-best --loss logit_diff > /dev/null 2>&1
$E --map $R/abl-curve-logitdiff-best --json results/ablation/curve-logitdiff-best.json > /dev/null 2>&1
echo done
