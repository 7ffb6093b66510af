"""pertprobe: benchmark cell and gene representations for perturbation analysis."""

__version__ = "0.1.0"
