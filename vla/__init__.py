"""vla: a Vision-Language-Action control stack built for fast on-robot inference."""

__version__ = "0.1.0"
