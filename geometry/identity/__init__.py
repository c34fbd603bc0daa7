"""Identity-code perturbations: CHEP (convex-hull escape), noise, ε-DP Laplace and keyed rotation.

All functions act on identity codes α of the morphable model (``(K,)`` float, N(0, I) units) and
are pure: randomness comes from an explicit ``numpy.random.Generator``.
"""
