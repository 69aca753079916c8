"""ferdata: a data-centric dataset builder for facial expression recognition."""

__version__ = "0.1.0"
