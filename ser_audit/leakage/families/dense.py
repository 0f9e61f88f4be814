"""Dense targets: everything else (asked last)."""

from ser_audit.leakage.families import Family

FAMILY = Family("dense", priority=90, kinds=None, others=("recurrent",))
