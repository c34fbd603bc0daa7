"""De-identification methods and their registry.

A method is a pure function ``apply(DeidInput, params, rng) -> DeidOutput`` with a parameter
dataclass, registered by name (:mod:`~headveil.render.deid.registry`). Importing this package
registers the built-in methods: ``blur``, ``pixelate``, ``mask`` (:mod:`.baselines`), ``id-noise``,
``id-dp``, ``id-keyed`` (:mod:`.idcode`) and ``chep`` (:mod:`.chep`); :mod:`.face3d` re-renders a face
with a new identity inside its photo.
"""

from headveil.render.deid import baselines, chep, idcode  # noqa: F401  (registers the built-in methods)
