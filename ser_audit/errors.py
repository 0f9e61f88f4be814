"""One hierarchy of typed errors; only the CLI turns them into messages and exit codes.

Every message names the offending file or flag and says what to do instead.
"""

from __future__ import annotations


class SerAuditError(Exception):
    """Base class for every error ser-audit raises on purpose (exit code 2)."""


class ConfigError(SerAuditError):
    """A flag, option or configuration value is invalid."""


class CorpusError(SerAuditError):
    """A corpus, manifest or audio file cannot be used."""


class FrontEndError(SerAuditError):
    """A front-end spec is missing or invalid."""


class ModelError(SerAuditError):
    """A model file cannot be loaded, run or tapped."""


class LayerSelectionError(ModelError):
    """A layer pattern matches no tappable layer."""


class OutputError(SerAuditError):
    """An output path (--out, --junit) cannot be written: a file where a folder must go, or no permission."""


class CacheError(SerAuditError):
    """A cache entry changed on disk while it was being read (``ser-audit cache verify`` lists such entries)."""


class DependencyError(SerAuditError):
    """A required library is missing or cannot be imported (a mismatched compiled pair, say)."""
