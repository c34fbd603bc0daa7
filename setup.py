"""Package discovery for the flat layout (the repository root is the package ``headveil``).

Everything else is in ``pyproject.toml``; this only computes ``packages``: ``headveil`` and every
folder below it that holds an ``__init__.py``, except tests, benchmarks and build outputs.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
SKIP = {"tests", "benchmarks", "build", "dist"}


def _packages() -> list[str]:
    found = ["headveil"]
    for init in sorted(ROOT.rglob("__init__.py")):
        rel = init.parent.relative_to(ROOT)
        if not rel.parts or rel.parts[0] in SKIP or any(p.startswith(".") or p.endswith(".egg-info") for p in rel.parts):
            continue
        found.append(".".join(("headveil", *rel.parts)))
    return found


setup(packages=_packages())
