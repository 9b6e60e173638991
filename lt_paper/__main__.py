"""Command line: ``python -m lt_paper {train,evaluate,presets,verify-data,reproduce,bench} ...``."""

from .cli import main

if __name__ == "__main__":
    main()
