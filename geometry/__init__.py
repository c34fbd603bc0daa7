"""HeadVeil geometry package (see design.md)."""
