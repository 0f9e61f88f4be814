"""The runner: from an :class:`~ser_audit.config.AuditConfig` to a report (or a written model).

``sources`` loads and checks the inputs, ``provenance`` records how a report was made,
``leakage`` and ``robustness`` run the studies, ``verdict`` turns flags and policy into one
policy, ``audit`` decides the gates of each run, ``models`` trains, exports and hardens.
``ser_audit.api`` is the thin public face over this package.
"""
