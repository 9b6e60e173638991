"""lt_paper: reference companion to "Improving Long-Tailed Classification from Instance Level".

Subpackages. The science, in data-flow order: ``data`` (long-tailed datasets and loaders), ``models``
(ResNets, cosine heads, the Mixture-of-Experts), ``losses`` (ALA and the baselines), ``train`` (config,
engine, checkpoints, evaluation, provenance), ``analysis`` (tables and figures from run records). Beside
them: ``files`` (atomic writes, locks, the journalled folder swap), used by every layer. On top:
``workflows`` (rows, notebooks' outputs, reproduce, campaign, publish) and ``bench`` (the speed
benchmark). ``cli`` (``python -m lt_paper``) dispatches to them. The science packages never import
``workflows``, ``bench`` or ``cli``; docs/design.md draws who imports whom, from the code.
"""

__version__ = "0.1.0"
