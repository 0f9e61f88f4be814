"""Recurrent targets: any LSTM, GRU or RNN layer (a CNN in front of a GRU included)."""

import re

from ser_audit.leakage.families import Family


def recurrence_in_graph(operators: set[str]) -> bool:
    """A recurrent operator inside the graph, where no layer is named for it (a scripted module's export
    keeps the recurrence as an ONNX LSTM/GRU/RNN node without its module's scope)."""
    return bool(operators & {"LSTM", "GRU", "RNN"})


FAMILY = Family("recurrent", priority=10, kinds=re.compile(r"lstm|gru|rnn", re.IGNORECASE), others=("convolutional",),
                graph=recurrence_in_graph)
