"""Training engine: the loop (train.py), checkpoints, EMA and optimisation."""
