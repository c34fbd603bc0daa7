"""Cross-cutting helpers every package may use: errors, run manifests, atomic outputs, image I/O.

Nothing here imports torch at module import time except where a function needs it.
"""
