"""``zoo:wav2vec2-ser``: a small wav2vec 2.0-style encoder, pretrained with CTC, under SUPERB's emotion head.

The shape of the SER models shipped today (wav2vec 2.0, HuBERT, WavLM), small enough to train
on 2 CPU cores in minutes:

- **Encoder** (Baevski et al., NeurIPS 2020), named as transformers names it, so that ser-audit
  reads its blocks as it reads a checkpoint's: a convolutional feature encoder on the waveform
  (``wav2vec2.feature_extractor``: four 1-d convolutions of 32 channels, strides 5, 4, 4, 4, so
  50 frames a second, group norm after the first, GELU), a feature projection (layer norm, linear), a
  convolutional relative position embedding, ``layers`` pre-LN transformer blocks
  (``wav2vec2.encoder.layers.N``) and a closing layer norm. The waveform is normalised per
  utterance inside the module, as ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does.
- **Pretraining**: CTC on the transcripts of ``librispeech-like`` (its training readers), through
  the existing transcript stage (``transcribe``: a linear CTC head on the last block). wav2vec 2.0
  pretrains with masked contrastive prediction and then fine-tunes with CTC; with 960 synthetic
  utterances, CTC alone is what gives the blocks speech content to hold.
- **Emotion** (SUPERB, Yang et al., Interspeech 2021): the encoder frozen; a softmax-weighted sum
  of the hidden states (the projection's output and every block's), a projector, the mean over
  time and a linear classifier, trained on ``iemocap-like``. The weighted sum reads every block,
  so no block's downstream is a function of it alone, and the same-architecture attacker says so.
"""

from __future__ import annotations

import torch
from torch import nn

from ser_audit.frontend.spec import Features, FrontEndSpec
from ser_audit.models.zoo import ParameterGroup, ReferenceModel, Stage
from ser_audit_reference.asr import ALPHABET

CONVOLUTIONS = ((10, 5), (8, 4), (4, 4), (4, 4))  # (kernel, stride): 320 samples a frame, 50 frames a second


class FeatureEncoder(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 1
        for index, (kernel, stride) in enumerate(CONVOLUTIONS):
            layers.append(nn.Conv1d(previous, channels, kernel, stride=stride, bias=False))
            if index == 0:
                layers.append(nn.GroupNorm(channels, channels))
            layers.append(nn.GELU())
            previous = channels
        self.conv_layers = nn.Sequential(*layers)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.conv_layers(waveform.unsqueeze(1))  # [batch, channels, frames]


class FeatureProjection(nn.Module):
    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(channels)
        self.projection = nn.Linear(channels, width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.projection(self.layer_norm(features.transpose(1, 2)))


class PositionalConvEmbedding(nn.Module):
    def __init__(self, width: int, kernel: int = 16, groups: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=groups)
        self.activation = nn.GELU()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        position = self.conv(hidden.transpose(1, 2))[..., : hidden.shape[1]]
        return self.activation(position).transpose(1, 2)


class Encoder(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.pos_conv_embed = PositionalConvEmbedding(width)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.1, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(layers))
        self.layer_norm = nn.LayerNorm(width)

    def hidden_states(self, hidden: torch.Tensor) -> list[torch.Tensor]:
        """The input to the blocks and each block's output, the last one after the closing norm."""
        hidden = hidden + self.pos_conv_embed(hidden)
        states = [hidden]
        for layer in self.layers:
            hidden = layer(hidden)
            states.append(hidden)
        states[-1] = self.layer_norm(states[-1])
        return states


class Backbone(nn.Module):
    def __init__(self, channels: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.feature_extractor = FeatureEncoder(channels)
        self.feature_projection = FeatureProjection(channels, width)
        self.encoder = Encoder(width, layers, heads)

    def forward(self, waveform: torch.Tensor) -> list[torch.Tensor]:
        mean, variance = waveform.mean(-1, keepdim=True), waveform.var(-1, keepdim=True, unbiased=False)
        normalised = (waveform - mean) / torch.sqrt(variance + 1e-7)  # do_normalize, inside the module
        return self.encoder.hidden_states(self.feature_projection(self.feature_extractor(normalised)))


class Wav2Vec2SER(nn.Module):
    """Waveform ``[batch, samples]`` to emotion logits (SUPERB's head) and, for pretraining, CTC logits."""

    def __init__(self, n_classes: int, *, channels: int = 32, width: int = 64, layers: int = 4, heads: int = 4,
                 projector: int = 32, n_symbols: int = len(ALPHABET) + 1) -> None:
        super().__init__()
        self.wav2vec2 = Backbone(channels, width, layers, heads)
        self.ctc_head = nn.Linear(width, n_symbols)
        self.layer_weights = nn.Parameter(torch.zeros(layers + 1))
        self.projector = nn.Linear(width, projector)
        self.classifier = nn.Linear(projector, n_classes)

    def transcribe(self, waveform: torch.Tensor) -> torch.Tensor:
        """CTC logits ``[batch, frames, n_symbols]`` from the last block."""
        return self.ctc_head(self.wav2vec2(waveform)[-1])

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        states = torch.stack(self.wav2vec2(waveform), dim=1)  # [batch, layers + 1, frames, width]
        weights = torch.softmax(self.layer_weights, dim=0)
        hidden = (states * weights.view(1, -1, 1, 1)).sum(1)
        return self.classifier(self.projector(hidden).mean(1))


def build(n_classes: int = 4, **config: int) -> Wav2Vec2SER:
    return Wav2Vec2SER(n_classes, **config)


FRONTEND = FrontEndSpec(sample_rate=16_000, features=Features(kind="waveform"), layout=["batch", "time"],
                        duration_s=3.0, input_name="input_values", emotions=[])
PAPER = "SUPERB (Yang et al., Interspeech 2021) emotion head on a wav2vec 2.0-style encoder (Baevski et al., 2020)"
PRETRAINING = Stage(corpus="librispeech-like", target="transcript", alphabet=ALPHABET, epochs=12, batch_size=16,
                    optimiser="adam", learning_rate=2e-3, clip_grad_norm=15.0)
# SUPERB trains the weighted sum and the head with the upstream frozen.
EMOTION = Stage(corpus="iemocap-like", target="emotion", epochs=30, batch_size=32, optimiser="adam", learning_rate=1e-3,
                groups=(ParameterGroup(("wav2vec2.*", "ctc_head.*"), frozen=True),))

WAV2VEC2_SER_ENTRY = ReferenceModel(
    name="wav2vec2-ser",
    paper=PAPER,
    description="4 pre-LN transformer blocks (width 64, 4 heads) on a 4-conv waveform encoder, CTC-pretrained on "
    "librispeech-like; SUPERB's weighted layer sum, projector and mean-pooled classifier trained on emotion",
    build=build,
    frontend=FRONTEND,
    training=(PRETRAINING, EMOTION),
    version=1,
)
