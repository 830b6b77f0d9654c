"""Experiments built from the core and the trainer: transfer and its evaluation, leave-one-task-out,
ladder sweeps, cross-scale analysis, the circuits table and benchmarks (functions only; no argument parsing)."""
