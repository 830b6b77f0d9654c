"""The bottom layer: models, node graphs, tasks, interventions, attribution, evaluation, maps and roles.

Nothing here imports Lightning, the CLI, or anything above `dfa.core`."""
