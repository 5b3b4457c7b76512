"""Datasets: the ragged in-memory/memory-mapped container, the built-in generator, real readers, the store."""
