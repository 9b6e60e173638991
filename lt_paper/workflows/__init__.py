"""Workflows: what turns runs into notebooks and publications, on top of the science packages.

Modules, one concern each:

- ``rows``: each table's rows (``{label: preset method}``), defined once; ``profiles``: the reproduction
  profiles (which notebooks, parameters, published runs each holds);
- ``experiments``: rows x seeds -> runs (trained or looked up), the data a notebook reads;
- ``outputs``: ``NotebookOutputs``, a notebook's parameters checked and its tables and figures written;
  ``notes``: the teaching notes that follow the profile and the data; ``explore``: the hard-sample
  explorer widget;
- ``reproduce``: notebooks executed into ``outputs/<profile>/``; ``campaign``: the runs a profile needs,
  planned and trained in packs; ``publish``: an output copied into ``results/`` and ``figures/``;
  ``portable``: published files without machine paths, in strict JSON.

These modules are workflow-level (they know notebooks, profiles, published folders), which is why they
live here and not in a science package. May import the science packages (``data``, ``models``, ``losses``,
``train``, ``analysis``) and ``files``; never ``bench`` or ``cli``. No science package imports this one.
"""
