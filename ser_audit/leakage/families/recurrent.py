"""Recurrent targets: any LSTM, GRU or RNN layer (a CNN in front of a GRU included)."""

import re

from ser_audit.leakage.families import Family

FAMILY = Family("recurrent", priority=10, kinds=re.compile(r"lstm|gru|rnn", re.IGNORECASE), others=("convolutional",))
