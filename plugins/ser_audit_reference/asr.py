"""P3 (Lakomkin, Weber, Magg, Wermter): SER on the representations of a frozen, CTC-trained recogniser.

The recogniser is DeepSpeech-2 style (:class:`DeepSpeech2`): two convolutions over the power
spectrogram (20 ms Hamming window, 10 ms hop, 161 bins; kernels 41x11 and 21x11, strides 2x2
and 2x1 over frequency x time, clipped ReLU), five bidirectional GRU layers (``asr.gru1`` ...
``asr.gru5``, each its own module, so each is a tap; each reads a layer-normalised input where
DeepSpeech 2 batch-normalises it) and a symbol softmax trained with CTC on the transcripts of the
``librispeech-like`` corpus (its 40 ``train`` readers; the 8 ``test`` readers give the held-out
symbol error rate, decoded greedily, recorded in the model's metadata beside the rate of
always answering the most frequent symbol). Its log power spectrogram is normalised per
utterance inside the network (one mean and spread, as DeepSpeech 2 implementations do), so
the recording level does not reach it; the spectral shape does.

Four zoo entries, P3's SER variants:

- ``asr-baseline``: a two-layer bidirectional GRU on 13 MFCC + smoothed pitch and their deltas,
  mean over time, dropout 0.25, softmax (no recogniser).
- ``asr-mp-3``: mean over time of ASR GRU layer 3, softmax.
- ``asr-rnn-2``: a new bidirectional GRU on ASR GRU layer 2, mean over time, softmax.
- ``asr-progressive-2``: the baseline branch beside the mean of ASR GRU layer 2, concatenated, softmax.

All four train on emotion with P3's Adam and gradient clipping at 15, at a rate of 1e-3 (P3:
1e-4; see :data:`EMOTION`). The three on the recogniser train it in their first stage
(``target="transcript"``) and keep it frozen (``ParameterGroup(("asr.*",), frozen=True)``)
while the emotion head trains; the recogniser has layer norm, no batch norm and no dropout,
so frozen parameters are all there is to freeze (its outputs do not depend on the mode). The
pooled recogniser layer passes a batch norm before the softmax (not in P3), which trains.
They read one input, the spectrogram rows stacked with the baseline's 28 MFCC and pitch rows
(:data:`P3_STACK`), so that the recogniser is built from the same initial values and trained
on bit-identical tensors in all three: the stage ``shares`` ``asr.*`` and the first of them
to train caches it for the other two (``models.transcription``). MP-3 and RNN-2 read only the
spectrogram rows; a gradient on the other rows is zero.

Scaled to train on 2 CPU cores (the factors are in ``config`` and so in the metadata):
``conv_channels`` 8 (DeepSpeech 2: 32), ``asr_hidden`` 64 units per direction (DeepSpeech 2:
800; factor 0.08), ``asr_time_stride`` 2 in the second convolution (DeepSpeech 2: 1; the GRUs
run at 25 frames a second), ``hidden`` 48 units per direction in the baseline and RNN-x GRUs
(P3's baseline: 96). 3 s inputs (P3: whole utterances). P3 trains with tempo (0.85-1.15) and
gain (-3..+6 dB) augmentation; the training contract draws no augmentation, so there is none here.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ser_audit.corpus.synthetic.voice import CONSONANT_SYMBOLS, VOWEL_SYMBOLS, WORD_BOUNDARY
from ser_audit.frontend.spec import Features, FrontEndSpec
from ser_audit.models.zoo import ParameterGroup, ReferenceModel, Stage

# The recogniser's output symbols after the CTC blank: the word boundary, the consonants, the vowels.
ALPHABET = WORD_BOUNDARY + "".join(CONSONANT_SYMBOLS) + "".join(VOWEL_SYMBOLS)
SPECTROGRAM_BINS = 161
HOP = 160  # 10 ms at 16 kHz

POWER_SPECTROGRAM = Features(kind="spectrogram", n_fft=320, win_length=320, hop_length=HOP, window="hamming", power=2.0)
MFCC_PITCH = Features(kind="mfcc", n_fft=320, win_length=320, hop_length=HOP, window="hamming", n_mels=40, n_mfcc=13,
                      pitch=True, deltas=1)
BASELINE_ROWS = 2 * (13 + 1)  # MFCC and pitch, with their deltas

P3_STACK = FrontEndSpec(
    sample_rate=16_000,
    features=Features(kind="stack", hop_length=HOP, parts=[POWER_SPECTROGRAM, MFCC_PITCH]),
    layout=["batch", "freq", "time"],
    duration_s=3.0,
    emotions=[],
)
P3_BASELINE_FEATURES = P3_STACK.model_copy(update={"features": MFCC_PITCH})


class DeepSpeech2(nn.Module):
    """Spectrogram rows ``[batch, 161, frames]`` to five BiGRU layers and CTC logits.

    Args:
        n_symbols: Output classes per frame (the CTC blank first).
        conv_channels: Channels of both convolutions (DeepSpeech 2: 32).
        hidden: GRU units per direction (DeepSpeech 2: 800).
        layers: Bidirectional GRU layers (P3: 5).
    """

    def __init__(self, n_symbols: int, *, conv_channels: int = 32, hidden: int = 800, layers: int = 5,
                 time_stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, conv_channels, kernel_size=(41, 11), stride=(2, 2), padding=(20, 5))
        self.conv2 = nn.Conv2d(conv_channels, conv_channels, kernel_size=(21, 11), stride=(2, time_stride), padding=(10, 5))
        self.clip1 = nn.Hardtanh(0.0, 20.0)  # DeepSpeech 2's clipped ReLU
        self.clip2 = nn.Hardtanh(0.0, 20.0)
        bins = (SPECTROGRAM_BINS + 1) // 2
        bins = (bins + 1) // 2
        width = conv_channels * bins
        for k in range(1, layers + 1):
            # Each GRU reads a layer-normalised input (DeepSpeech 2 batch-normalises it; layer norm keeps no
            # running statistics, so the frozen recogniser computes the same in training and evaluation).
            setattr(self, f"norm{k}", nn.LayerNorm(width if k == 1 else 2 * hidden))
            setattr(self, f"gru{k}", nn.GRU(width if k == 1 else 2 * hidden, hidden, batch_first=True, bidirectional=True))
        self.layers = layers
        self.output = nn.Linear(2 * hidden, n_symbols)

    def sequences(self, spectrogram: torch.Tensor, depth: int) -> list[torch.Tensor]:
        """The outputs ``[batch, frames / 2, 2 * hidden]`` of GRU layers 1 to ``depth``."""
        x = spectrogram  # log power, [batch, bins, frames]
        # Per utterance, one mean and one spread over all bins and frames, as DeepSpeech 2 implementations do:
        # the level goes, the spectral shape (tilt, harmonics) stays.
        x = (x - x.mean((1, 2), keepdim=True)) / (x.std((1, 2), keepdim=True) + 1e-5)
        x = self.clip2(self.conv2(self.clip1(self.conv1(x.unsqueeze(1)))))  # [batch, channels, bins, frames]
        x = x.flatten(1, 2).transpose(1, 2)  # [batch, frames, channels * bins]
        out = []
        for k in range(1, depth + 1):
            x, _ = getattr(self, f"gru{k}")(getattr(self, f"norm{k}")(x))
            out.append(x)
        return out

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        return self.output(self.sequences(spectrogram, self.layers)[-1])


class BaselineBranch(nn.Module):
    """P3's baseline: input normalisation, two BiGRU layers over MFCC + pitch rows, mean over time, dropout 0.25."""

    def __init__(self, rows: int, hidden: int) -> None:
        super().__init__()
        self.normalise = nn.BatchNorm1d(rows)
        self.gru1 = nn.GRU(rows, hidden, batch_first=True, bidirectional=True)
        self.gru2 = nn.GRU(2 * hidden, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(0.25)
        self.width = 2 * hidden

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        x = self.normalise(rows).transpose(1, 2)
        x, _ = self.gru1(x)
        x, _ = self.gru2(x)
        return self.dropout(x.mean(1))


class AsrBaseline(nn.Module):
    """``asr-baseline``: MFCC + pitch rows ``[batch, 28, frames]`` to emotion logits."""

    def __init__(self, n_classes: int, *, hidden: int = 96) -> None:
        super().__init__()
        self.baseline = BaselineBranch(BASELINE_ROWS, hidden)
        self.classifier = nn.Linear(self.baseline.width, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.baseline(features))


class AsrTransfer(nn.Module):
    """P3's SER variants on the recogniser, over the stacked input ``[batch, 161 + 28, frames]``.

    Args:
        n_classes: Emotions.
        variant: ``mp`` (mean of ASR layer ``layer``), ``rnn`` (a new BiGRU on it, then the mean) or
            ``progressive`` (the baseline branch beside the mean of ASR layer ``layer``).
        layer: ASR GRU layer read (1-5).
        n_symbols: The recogniser's output classes (blank first).
        conv_channels, asr_hidden: The recogniser's width.
        asr_time_stride: Time stride of the recogniser's second convolution (DeepSpeech 2: 1).
        hidden: Units per direction of the new GRUs (RNN-x, the progressive net's baseline branch).
    """

    def __init__(self, n_classes: int, *, variant: str, layer: int, n_symbols: int = len(ALPHABET) + 1,
                 conv_channels: int = 32, asr_hidden: int = 800, asr_time_stride: int = 1, hidden: int = 96) -> None:
        super().__init__()
        if variant not in ("mp", "rnn", "progressive") or not 1 <= layer <= 5:
            raise ValueError(f"variant {variant!r} layer {layer}: use mp, rnn or progressive on layers 1-5")
        # Built first, so that every variant draws the same initial recogniser from the same seed.
        self.asr = DeepSpeech2(n_symbols, conv_channels=conv_channels, hidden=asr_hidden, time_stride=asr_time_stride)
        self.variant, self.layer = variant, layer
        width = 2 * asr_hidden
        # The pooled recogniser layer is standardised before the softmax (not in P3): its units spread
        # about 0.2, too little for Adam at 1e-4 to train a softmax on 320 utterances in 40 epochs.
        if variant == "rnn":
            self.rnn = nn.GRU(width, hidden, batch_first=True, bidirectional=True)
            width = 2 * hidden
        self.pooled_norm = nn.BatchNorm1d(width)
        if variant == "progressive":
            self.baseline = BaselineBranch(BASELINE_ROWS, hidden)
            width += self.baseline.width
        self.classifier = nn.Linear(width, n_classes)

    def transcribe(self, features: torch.Tensor) -> torch.Tensor:
        """CTC logits ``[batch, frames / 2, n_symbols]`` of the recogniser."""
        return self.asr(features[:, :SPECTROGRAM_BINS])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.asr.sequences(features[:, :SPECTROGRAM_BINS], self.layer)[-1]
        if self.variant == "rnn":
            x, _ = self.rnn(x)
        pooled = self.pooled_norm(x.mean(1))
        if self.variant == "progressive":
            pooled = torch.cat([self.baseline(features[:, SPECTROGRAM_BINS:]), pooled], dim=1)
        return self.classifier(pooled)


def build_baseline(n_classes: int = 4, **config: int) -> AsrBaseline:
    return AsrBaseline(n_classes, **config)


def build_transfer(n_classes: int = 4, **config: int | str) -> AsrTransfer:
    return AsrTransfer(n_classes, **config)  # type: ignore[arg-type]


PAPER = "P3 (Lakomkin, Weber, Magg, Wermter: reusing ASR representations for SER)"
ASR_CONFIG = {"conv_channels": 8, "asr_hidden": 64, "asr_time_stride": 2, "hidden": 48}
SCALING = "recogniser: 8 conv channels (DeepSpeech 2: 32), 5 BiGRU x 64 units (DeepSpeech 2: 800); new GRUs 48 units (P3: 96)"

# DeepSpeech 2 trains with SGD on thousands of hours; Adam at 2e-3 in batches of 16 leaves CTC's
# all-blank plateau within 10 epochs on the embedded 960 training utterances.
RECOGNISER = Stage(
    corpus="librispeech-like", target="transcript", alphabet=ALPHABET, epochs=25, batch_size=16, optimiser="adam",
    learning_rate=2e-3, clip_grad_norm=15.0, shares=("asr.*",),
)
# P3: Adam, gradient norm clipped at 15, batch 64. Here batch 32 and a rate of 1e-3 (P3: 1e-4): the
# embedded corpus trains on 320 utterances, and at 1e-4 forty epochs leave MP-3's softmax
# under-fitted (training UAR 0.37 on the frozen recogniser's layer 3; 0.54 at 1e-3).
EMOTION = Stage(corpus="iemocap-like", target="emotion", epochs=40, batch_size=32, optimiser="adam", learning_rate=1e-3,
                clip_grad_norm=15.0)
FROZEN_RECOGNISER = replace(EMOTION, groups=(ParameterGroup(("asr.*",), frozen=True),))

ASR_BASELINE_ENTRY = ReferenceModel(
    name="asr-baseline",
    paper=PAPER,
    description="P3's baseline: 2-layer BiGRU (48 units; P3: 96) on 13 MFCC + smoothed pitch + deltas, mean-pooled, "
    "dropout 0.25",
    build=build_baseline,
    config={"hidden": ASR_CONFIG["hidden"]},
    frontend=P3_BASELINE_FEATURES,
    training=EMOTION,
    version=2,
)


def _transfer(name: str, variant: str, layer: int, description: str) -> ReferenceModel:
    return ReferenceModel(
        name=name, paper=PAPER, description=f"{description}; frozen CTC recogniser trained on librispeech-like; {SCALING}",
        build=build_transfer, config={**ASR_CONFIG, "variant": variant, "layer": layer}, frontend=P3_STACK,
        training=(RECOGNISER, FROZEN_RECOGNISER), version=3,
    )


ASR_MP3_ENTRY = _transfer("asr-mp-3", "mp", 3, "P3's MP-3: mean over time of ASR GRU layer 3, softmax")
ASR_RNN2_ENTRY = _transfer("asr-rnn-2", "rnn", 2, "P3's RNN-2: a new BiGRU on ASR GRU layer 2, mean over time, softmax")
ASR_PROGRESSIVE2_ENTRY = _transfer(
    "asr-progressive-2", "progressive", 2, "P3's Progressive-2: the baseline branch beside the mean of ASR GRU layer 2")
