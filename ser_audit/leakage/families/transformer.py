"""Transformer targets: self-attention encoder blocks (wav2vec2, HuBERT, WavLM, Whisper, torch's own)."""

import re

from ser_audit.leakage.families import Family


def attention_in_graph(operators: set[str]) -> bool:
    """Attention as an exporter writes it: a Softmax inside the graph (not the output's probabilities),
    matrix products and a layer norm."""
    return "Softmax" in operators and "MatMul" in operators and bool(operators & {"LayerNormalization", "LayerNorm"})


FAMILY = Family("transformer", priority=20,
                kinds=re.compile(r"EncoderLayer|TransformerEncoder|MultiheadAttention|SelfAttention", re.IGNORECASE),
                others=("convolutional", "recurrent"), graph=attention_in_graph)
