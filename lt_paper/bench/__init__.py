"""The speed benchmark, ``python -m lt_paper bench``: how fast runs train here, the published way and ours.

- ``core``: what both sections share (sizes, synthetic data, the epoch timer, engine and ensemble timings,
  the report's table writer);
- ``main_section`` (``--section main``): the reference-style loop against the engine's paths, Table 4's runs
  one after another, side by side and batched, ResNeXt-50 throughput;
- ``cpu_section`` (``--section cpu``): the ``cifar-cpu`` profile's network on this CPU;
- ``command``: the options, their checks, and the chosen section.

May import the science packages (``data``, ``models``, ``losses``, ``train``, ``analysis``) and
``workflows`` (the rows and methods the profiles train); nothing imports ``bench`` but ``lt_paper.cli``.
The sections import ``core``, never each other.
"""
