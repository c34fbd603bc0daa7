"""HeadVeil assets package (see design.md)."""
