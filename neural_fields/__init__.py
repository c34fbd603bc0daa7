"""HeadVeil neural_fields package (see design.md)."""
