"""MLflow tracking: store resolution, the run tree (parent → pretrain/evaluation children), artifacts."""
