"""HeadVeil render package (see design.md)."""
