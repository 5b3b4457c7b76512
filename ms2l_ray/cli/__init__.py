"""Command-line commands, one module per group; :mod:`ms2l_ray.cli.main` assembles them into ``ms2l``."""
