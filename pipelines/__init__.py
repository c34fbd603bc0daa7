"""HeadVeil pipelines package (see design.md)."""
