"""The Ray layer: a Ray Train ``TorchTrainer`` runs every pretrain and evaluation job (DDP, GPU when present)."""
