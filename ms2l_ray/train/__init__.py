"""Training loops in plain PyTorch (no Ray here): pretraining, evaluation strategies, KNN, metrics.

The Ray layer (``ms2l_ray.jobs``) calls these loops inside Train workers and passes a model
wrapper (DDP), the worker's rank and epoch hooks; everything here also runs stand-alone for tests.
"""
