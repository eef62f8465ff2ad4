"""ifdd-bench: benchmark and ablation toolkit for dynamic facial expression recognition."""

__version__ = "0.1.0"
