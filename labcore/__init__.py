"""labcore: the shared package behind the course. See README.md and notebooks/."""

__version__ = "0.1.0"
