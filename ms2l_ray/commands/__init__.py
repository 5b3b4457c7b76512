"""Command-line commands, one module per group; ``ms2l_ray.cli`` assembles them."""
