"""Convolutional targets: any convolution."""

import re

from ser_audit.leakage.families import Family

FAMILY = Family("convolutional", priority=30, kinds=re.compile(r"conv", re.IGNORECASE), others=("recurrent",))
