"""ms2l-ray: MS²L (Lin et al., ACM MM 2020) on a Ray-distributed search and ablation platform."""

__version__ = "0.1.0"
