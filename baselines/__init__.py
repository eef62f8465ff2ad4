"""Baseline DFER models, one module per family, registered into the shared registry on import."""
