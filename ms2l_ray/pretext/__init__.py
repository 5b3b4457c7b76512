"""The three self-supervised tasks of MS²L (arXiv:2010.05599 §3): their input transforms and losses.

Transforms (:mod:`.augment`) and losses (:mod:`.losses`) are pure tensor functions shared by pretraining and
the reference-oracle tests.
"""
