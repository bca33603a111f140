"""Kubeflow pipelines built from components/: the training pipeline (data -> train -> evaluate ->
register), the sweep (methods x seeds in parallel, the best registered), and the helpers that
check the parameters, compile to IR YAML, run on one machine with kfp.local, or submit to a
Kubeflow Pipelines endpoint."""
