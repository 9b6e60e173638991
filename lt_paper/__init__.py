"""lt_paper: reference companion to "Improving Long-Tailed Classification from Instance Level".

Subpackages, in data-flow order: ``data`` (long-tailed datasets and loaders), ``models`` (ResNets,
cosine heads, the Mixture-of-Experts), ``losses`` (ALA and the baselines), ``train`` (config, engine,
checkpoints, evaluation), ``analysis`` (tables and figures from run records).
"""

__version__ = "0.1.0"
