"""The block structure of a transformer audio classifier, read from its layer names alone.

transformers names the parts of wav2vec2, HuBERT, WavLM, data2vec-audio and Whisper alike
(``<base>.feature_extractor``, ``<base>.feature_projection``, ``<base>.encoder.layers.N``,
``<base>.encoder.layer_norm``, ``projector``, ``classifier``), and every exporter keeps those
names as module scopes. So the folder and its ONNX, TorchScript or torch.export exports list
the same blocks, by name, in any format.

    >>> transformer_blocks(["w.feature_extractor.conv", "w.encoder.layers.0.fc", "w.encoder.layers.1.fc",
    ...                     "projector", "classifier"])
    ['w.feature_extractor', 'w.encoder.layers.0', 'w.encoder.layers.1', 'projector', 'classifier']
    >>> transformer_blocks(["conv1", "pool1", "fc"])
    []
"""

from __future__ import annotations

import re
from typing import Sequence

_ENCODER_BLOCK = re.compile(r"^(?P<encoder>(?:.+\.)?encoder)\.layers\.\d+$")
HEADS = ("projector", "classifier")


def _scopes(names: Sequence[str]) -> dict[str, int]:
    """Every module path that is a layer or holds one, with the position of its last layer."""
    last: dict[str, int] = {}
    for position, name in enumerate(names):
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            last[".".join(parts[:end])] = position
    return last


def transformer_blocks(names: Sequence[str]) -> list[str]:
    """The blocks a user thinks in, in execution order: the feature encoder and projection (Whisper: its
    second convolution), each encoder block, the encoder's closing norm where it follows the blocks,
    the projector and the head. Empty when the names show no transformer encoder."""
    scopes = _scopes(names)
    blocks = [scope for scope in scopes if _ENCODER_BLOCK.match(scope)]
    if not blocks:
        return []
    encoder = _ENCODER_BLOCK.match(blocks[0]).group("encoder")  # type: ignore[union-attr]
    base = encoder.rpartition(".")[0]
    candidates = [f"{base}.{part}".lstrip(".") for part in ("feature_extractor", "feature_projection")]
    candidates += [f"{encoder}.conv2", *blocks]
    closing = f"{encoder}.layer_norm"
    if closing in scopes and scopes[closing] > max(scopes[block] for block in blocks):
        candidates.append(closing)
    candidates += [head for head in HEADS if head in scopes]
    chosen = [name for name in candidates if name in scopes]
    return sorted(dict.fromkeys(chosen), key=lambda name: scopes[name])


def encoder_blocks(blocks: Sequence[str]) -> list[str]:
    return [name for name in blocks if _ENCODER_BLOCK.match(name)]
