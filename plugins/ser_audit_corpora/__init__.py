"""Loaders for the real SER corpora the papers use, registered as ordinary ``ser_audit.corpora`` plugins.

Each reads a local copy in its distributor's layout; nothing is downloaded. They use only
ser-audit's public corpus interfaces (``ser_audit.corpus.loader`` and ``ser_audit.corpus.interface``).
"""
