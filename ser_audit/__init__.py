"""ser-audit: privacy-leakage and robustness audits for speech emotion recognition models."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("ser-audit")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
