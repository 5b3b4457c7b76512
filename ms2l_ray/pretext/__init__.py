"""The three self-supervised tasks of MS²L (paper §3): their input transforms (:mod:`.augment`) and their
losses (:mod:`.losses`), pure tensor functions shared by pretraining and the reference-oracle tests.
"""
