"""Morphable head models: the embedded CC0 model, user-model loaders, landmarks and fitting."""
