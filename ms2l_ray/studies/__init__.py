"""Studies: what a researcher runs on top of the job layer.

An experiment file (pretrain once, evaluate by several strategies), a rerun, a search (Ray Tune + Optuna) and an
ablation grid (cells × seeds → a table).
"""
