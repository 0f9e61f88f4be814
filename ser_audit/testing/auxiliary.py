"""An ONNX graph with auxiliary inputs beside the audio, as voice-activity models ship them.

``StatefulEmotion`` takes ``input`` ``[batch, samples]`` (float), ``state`` ``[2, batch, 16]``
(float, the batch on axis 1) and ``sr`` (an int64 scalar, the sample rate), and returns the logits
and the new state, in that order, as a voice-activity graph returns its output and state. Its
first layer, ``pitch``, is a fixed filter bank over the F0 range, so its band energies carry the
speaker's pitch (a gender cue) for a leakage audit to find (``leak=False`` puts noise there
instead). Nothing is trained.

>>> import tempfile, pathlib
>>> path = write_auxiliary_model(pathlib.Path(tempfile.mkdtemp()) / "vad.onnx")
>>> [value.name for value in __import__("onnx").load(str(path)).graph.input]
['input', 'state', 'sr']
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ser_audit.frontend.spec import METADATA_KEY, ExtraInput
from ser_audit.testing.topologies import PITCH_BANDS_HZ, PitchBands
from ser_audit.testing.topologies import WAVEFORM_FRONTEND as ONE_SECOND_OF_AUDIO

STATE_WIDTH = 16

WAVEFORM_FRONTEND = ONE_SECOND_OF_AUDIO.model_copy(update={"input_name": "input"})
# What a user declares for the graph's state and sample-rate inputs.
DECLARED_FRONTEND = WAVEFORM_FRONTEND.model_copy(update={"extra_inputs": [
    ExtraInput(name="state", source="zeros", batch_axis=1),
    ExtraInput(name="sr", source="constant", value=16000),
]})


class BandNoise(nn.Module):
    """Standard normal noise shaped like the band energies: carries nothing about the speaker."""

    def __init__(self, window: int = 400, hop: int = 160) -> None:
        super().__init__()
        self.frames = nn.Conv1d(1, len(PITCH_BANDS_HZ), window, stride=hop, bias=False)  # for its output's shape

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(self.frames(audio))


class StatefulEmotion(nn.Module):
    """pitch bands → conv → global pool → state update (GRU-like, state ``[2, batch, 16]``) → head."""

    def __init__(self, n_classes: int = 4, leak: bool = True) -> None:
        super().__init__()
        self.pitch: nn.Module = PitchBands() if leak else BandNoise()
        self.encoder = nn.Conv1d(len(PITCH_BANDS_HZ), STATE_WIDTH, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.update = nn.Linear(2 * STATE_WIDTH, STATE_WIDTH)
        self.head = nn.Linear(STATE_WIDTH, n_classes)

    def forward(self, input: torch.Tensor, state: torch.Tensor, sr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        audio = input * (sr.to(input.dtype) / 16000.0)  # reads the rate, as a VAD graph does
        hidden = self.flatten(self.pool(self.relu(self.encoder(self.pitch(audio[:, None])))))
        new = torch.tanh(self.update(torch.cat([hidden, state[0] + state[1]], dim=1)))
        return self.head(new), torch.stack([new, state[1]])


def write_auxiliary_model(path: Path, *, leak: bool = True, seed: int = 0, declare: bool = False) -> Path:
    """``StatefulEmotion`` as ONNX (dynamic batch and length) at ``path``. The embedded front-end spec feeds
    only the audio, as a graph handed over without a declaration would; with ``declare`` it also declares
    ``state`` (zeros, batch on axis 1) and ``sr`` (the constant 16000)."""
    import onnx

    from ser_audit.models.quiet import quiet_torch

    torch.manual_seed(seed)
    module = StatefulEmotion(leak=leak).eval()
    example = (torch.zeros(2, 16_000), torch.zeros(2, 2, STATE_WIDTH), torch.tensor(16_000, dtype=torch.int64))
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_torch():
        torch.onnx.export(module, example, str(path), dynamo=False, input_names=["input", "state", "sr"],
                          output_names=["output", "stateN"],
                          dynamic_axes={"input": {0: "batch", 1: "samples"}, "state": {1: "batch"},
                                        "output": {0: "batch"}, "stateN": {1: "batch"}})
    proto = onnx.load(str(path))
    spec = DECLARED_FRONTEND if declare else WAVEFORM_FRONTEND
    onnx.helper.set_model_props(proto, {METADATA_KEY: spec.to_json()})
    onnx.save(proto, str(path))
    return path
