"""The front-end spec: how audio becomes exactly the input a model expects.

It travels with the model: ONNX ``metadata_props`` key ``ser_audit.frontend``,
TorchScript extra file ``ser_audit.frontend.json``, a ``MODEL.frontend.json``
sidecar, or ``--frontend FILE``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ser_audit.errors import FrontEndError

FRONTEND_SCHEMA_VERSION: Literal[1] = 1
METADATA_KEY = "ser_audit.frontend"
EXTRA_FILE = "ser_audit.frontend.json"

Axis = Literal["batch", "channel", "freq", "time"]


class Features(BaseModel):
    """Feature extraction parameters (torchaudio transforms underneath)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["waveform", "spectrogram", "log_mel", "mfcc", "lld", "stack"] = Field(
        description="waveform (raw samples), spectrogram (magnitude or power STFT), log_mel, mfcc, "
        "lld (P0's low-level descriptors: energy, 12 MFCC, zero-crossing rate, voicing probability, F0, plus deltas), "
        "or stack (the rows of each of ``parts`` in turn, frame by frame, e.g. P3's spectrogram beside its MFCC and pitch)."
    )
    n_fft: int = Field(512, ge=16, description="FFT size in samples.")
    win_length: int | None = Field(None, ge=16, description="Window length in samples; defaults to n_fft.")
    hop_length: int = Field(256, ge=1, description="Hop between frames in samples.")
    window: Literal["hann", "hamming"] = Field("hann", description="Analysis window.")
    power: float = Field(2.0, description="Spectrogram exponent: 1 magnitude, 2 power.")
    n_mels: int = Field(64, ge=1, description="Mel bands (log_mel, mfcc).")
    f_min: float = Field(0.0, ge=0.0, description="Lowest frequency kept, Hz.")
    f_max: float | None = Field(None, description="Highest frequency kept, Hz; Nyquist when null.")
    n_mfcc: int = Field(13, ge=1, description="Cepstral coefficients (mfcc).")
    pitch: bool = Field(
        False, description="mfcc: append the smoothed F0 (median of 5 frames, in 100 Hz units, 0 where unvoiced) as one "
        "more row, before any deltas."
    )
    parts: list["Features"] = Field(
        default_factory=list, description="stack: the feature sets stacked, each with its own parameters and the same "
        "hop; frames are aligned and cut to the shortest."
    )
    deltas: int = Field(0, ge=0, le=2, description="Append first (1) or first and second (2) time derivatives.")
    mu_law: bool = Field(False, description="Apply mu-law expansion log(1 + mu x)/log(1 + mu) to the spectrogram.")
    log_offset: float = Field(1e-6, gt=0.0, description="Added before taking the log.")
    peak_normalise: bool = Field(
        False, description="Divide each segment's waveform by its absolute peak before analysis (P4's per-segment "
        "peak normalisation; the segment is the crop the model is fed)."
    )

    @model_validator(mode="after")
    def _check_parts(self) -> "Features":
        if (self.kind == "stack") != bool(self.parts):
            raise ValueError("kind 'stack' needs parts, and only a stack has parts")
        if any(part.kind in ("waveform", "stack") for part in self.parts):
            raise ValueError("a stack's parts are spectral features (spectrogram, log_mel, mfcc, lld), not waveform or stack")
        if len({part.hop_length for part in self.parts}) > 1:
            raise ValueError("a stack's parts must share one hop_length, so that their frames align")
        return self


REFERENCE_SOURCES = ("neutral_same_speaker",)
AUXILIARY_SOURCES = ("zeros", "constant", "length", "mask")


class ExtraInput(BaseModel):
    """A model input beyond the primary utterance: fed from the corpus (P4's neutral reference), or an
    auxiliary tensor made from the primary batch (a recurrent state, the sample rate, lengths, a mask)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The model's input name for this tensor.")
    source: Literal["neutral_same_speaker", "zeros", "constant", "length", "mask"] = Field(
        description="What to feed: neutral_same_speaker = a neutral utterance of the same speaker (not the utterance "
        "itself); zeros = a tensor of zeros (e.g. a recurrent state); constant = ``value`` everywhere (e.g. the "
        "sample rate); length = the primary input's length along its time axis, per utterance ([batch]; samples "
        "for a waveform front-end, frames otherwise); mask = an attention mask of ones over the utterance "
        "([batch, length])."
    )
    value: float | None = Field(None, description="constant: the value fed, e.g. 16000.")
    shape: list[int | Literal["batch"]] | None = Field(
        None, description="zeros, constant: the tensor's shape, 'batch' where the batch size goes (e.g. "
        "[2, 'batch', 64]; [] for a scalar). Default: the graph's declared shape with its batch axis filled in "
        "(a scalar for a constant where the model declares no shape)."
    )
    batch_axis: int | None = Field(
        None, ge=0, description="zeros, constant: which axis of the graph's declared shape is the batch, when "
        "``shape`` is not given (e.g. 1 for a state [layers, batch, hidden]); default: the first axis where the "
        "graph leaves it symbolic, else none (a scalar, a fixed-size tensor)."
    )
    dtype: Literal["float32", "float64", "int64", "int32", "bool"] | None = Field(
        None, description="Element type; default: the graph's declared type, else int64 for length and mask and "
        "float32 for zeros and constant."
    )

    @model_validator(mode="after")
    def _check_source(self) -> "ExtraInput":
        if (self.source == "constant") != (self.value is not None):
            raise ValueError("'value' is needed by source constant, and only by it")
        if self.source not in ("zeros", "constant") and (self.shape is not None or self.batch_axis is not None):
            raise ValueError(f"source {self.source} takes no shape or batch_axis (only zeros and constant do)")
        if self.source in REFERENCE_SOURCES and self.dtype is not None:
            raise ValueError(f"source {self.source} is fed the front-end's features; it takes no dtype")
        if self.shape is not None and self.shape.count("batch") > 1:
            raise ValueError("shape names 'batch' at most once")
        if self.shape is not None and self.batch_axis is not None:
            raise ValueError("give the batch axis in shape (write 'batch' there) or in batch_axis, not both")
        return self

    @property
    def auxiliary(self) -> bool:
        """Made from the primary batch rather than read from the corpus."""
        return self.source in AUXILIARY_SOURCES


class FrontEndSpec(BaseModel):
    """Everything needed to turn a corpus utterance into the model's input tensors."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = Field(FRONTEND_SCHEMA_VERSION, description="Version of this document's schema.")
    sample_rate: int = Field(16_000, ge=1000, description="Rate the model expects; audio is resampled to it.")
    features: Features
    normalisation: Literal["none", "utterance", "global"] = Field(
        "none", description="none; utterance = per-feature mean/variance over the utterance's frames; "
        "global = (x - mean) / std with the scalars below."
    )
    mean: float = Field(0.0, description="Global normalisation mean.")
    std: float = Field(1.0, gt=0.0, description="Global normalisation standard deviation.")
    layout: list[Axis] = Field(
        description="Axis order of the model input, e.g. [batch, channel, freq, time] or [batch, time, freq]."
    )
    duration_s: float | None = Field(
        None, gt=0.0, description="Fixed input length in seconds (crop or zero-pad); null for variable length."
    )
    crop: Literal["center", "start"] = Field("center", description="Which part of a longer utterance is kept.")
    input_name: str = Field("features", description="The model's input name for the primary utterance.")
    extra_inputs: list[ExtraInput] = Field(default_factory=list, description="Further inputs, in model order.")
    emotions: list[str] = Field(description="Emotion label of each logit, in output order.")
    audit_taps: list[str] = Field(
        default_factory=list, description="Layers every audit taps by default, beside its own choice: a model written by "
                                          "`ser-audit protect` names the layers audited before protection, so that later "
                                          "audits compare like with like, whatever operator now ends each layer.")

    @property
    def reference_inputs(self) -> list[ExtraInput]:
        """The further inputs read from the corpus (a neutral utterance of the speaker), in model order."""
        return [extra for extra in self.extra_inputs if not extra.auxiliary]

    @property
    def auxiliary_inputs(self) -> list[ExtraInput]:
        """The further inputs made from the primary batch (zeros, constant, length, mask), in model order."""
        return [extra for extra in self.extra_inputs if extra.auxiliary]

    @model_validator(mode="after")
    def _check_layout(self) -> "FrontEndSpec":
        axes = self.layout
        if axes[0] != "batch" or len(set(axes)) != len(axes):
            raise ValueError("layout must start with 'batch' and name each axis once")
        needed = {"batch", "time"} if self.features.kind == "waveform" else {"batch", "time", "freq"}
        if not needed <= set(axes):
            raise ValueError(f"layout for {self.features.kind} must contain {sorted(needed)}")
        names = [self.input_name, *(extra.name for extra in self.extra_inputs)]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must differ: input_name and extra_inputs name {names}")
        return self

    @property
    def num_samples(self) -> int | None:
        return None if self.duration_s is None else int(round(self.duration_s * self.sample_rate))

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


TEMPLATE = FrontEndSpec(
    features=Features(kind="log_mel", n_fft=512, hop_length=256, n_mels=64),
    normalisation="utterance",
    layout=["batch", "channel", "freq", "time"],
    duration_s=3.0,
    emotions=["neutral", "happy", "sad", "angry"],
)


def parse_spec(text: str, *, origin: str) -> FrontEndSpec:
    """Parse and validate a front-end spec, naming ``origin`` in any error."""
    try:
        return FrontEndSpec.model_validate(json.loads(text))
    except json.JSONDecodeError as error:
        raise FrontEndError(f"front-end spec in {origin} is not valid JSON ({error.msg})") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise FrontEndError(f"front-end spec in {origin}: {where}: {first['msg']}") from None


def load_spec_file(path: Path) -> FrontEndSpec:
    if not path.is_file():
        raise FrontEndError(f"--frontend {path} is a folder; pass the spec's JSON file" if path.is_dir()
                            else f"--frontend {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FrontEndError(f"front-end spec {path} is not UTF-8 text; write it as JSON "
                            "(schemas/frontend.schema.json lists the fields)") from None
    return parse_spec(text, origin=str(path))


def missing_spec_error(model_path: str) -> FrontEndError:
    """The error for a model that carries no spec, with a template to start from."""
    template = TEMPLATE.model_dump_json()
    return FrontEndError(
        f"model {model_path} carries no front-end spec; write one to {model_path}.frontend.json "
        f"or pass --frontend FILE, e.g. {template}"
    )
