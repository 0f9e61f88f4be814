"""Reference SER models from the papers ser-audit is built on, registered as ordinary plugins.

They use only ser-audit's public interfaces (``ser_audit.models.zoo`` and
``ser_audit.frontend.spec``), exactly as a third-party plugin would.
"""
