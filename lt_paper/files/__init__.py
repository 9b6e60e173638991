"""Small file-safety primitives that every layer writes through.

- ``atomic``: the one atomic writer (a temporary file renamed over the final one) and the cleanup of a
  crashed writer's temporaries;
- ``locks``: an exclusive lock on a folder or file, with its holder named;
- ``folder_swap``: a folder replaced by another through a journal, so that a crash finishes or rolls back.

Imports only the standard library (and ``files`` modules among themselves); anything in ``lt_paper`` may
import it.
"""
