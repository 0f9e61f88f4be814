"""transformers audio classifiers, read from a ``save_pretrained`` folder (the ``transformers`` extra).

wav2vec2, HuBERT, WavLM, data2vec-audio (``input_values``: the waveform) and Whisper-encoder
classifiers (``input_features``: log-mel frames) are wrapped so that the audited module maps the
waveform to logits, with the feature extractor's own preprocessing inside: ``do_normalize`` for
the waveform models, the log-mel of the Whisper extractor for Whisper. FGSM's eps is then in
waveform units, as for every other model, and exports carry the preprocessing.

Traps this module closes (from transformers' source and issue threads):

- ``AutoModelForAudioClassification`` builds a random head when the checkpoint names a head class
  it does not know, and only warns. A checkpoint with missing or mismatched weights is refused.
- Group-norm feature encoders change their outputs under zero padding, and layer-norm ones want an
  attention mask when padded. Extraction never pads (equal-length batches), so neither applies;
  the report records the policy.
- ``.bin`` weights are unpickled weights-only.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ser_audit.errors import DependencyError, ModelError
from ser_audit.frontend.spec import Features, FrontEndSpec
from ser_audit.hashing import file_sha256
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.interface import LayerEntry
from ser_audit.models.subnetwork import Downstream, Unavailable

INSTALL_HINT = "pip install 'ser-audit[transformers]'"
CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
PADDING_POLICY = "equal-length batches, never padded (no attention mask needed)"


def require_transformers() -> Any:
    try:
        import transformers
    except ImportError as error:
        raise DependencyError(f"reading a transformers checkpoint needs transformers, which is not installed "
                              f"({error}); run: {INSTALL_HINT}") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def is_pretrained_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file()


class WhisperLogMel(nn.Module):
    """The Whisper feature extractor's log-mel, in torch (differentiable): power STFT, its mel
    filters, log10, an 8-decade floor under each utterance's peak, then (x + 4) / 4. The STFT is a
    convolution with windowed cosines and sines, so that the module exports to ONNX and TorchScript
    (complex tensors do not)."""

    def __init__(self, extractor: Any) -> None:
        super().__init__()
        self.n_fft, self.hop = int(extractor.n_fft), int(extractor.hop_length)
        self.samples = int(extractor.n_samples)
        self.register_buffer("filters", torch.as_tensor(np.asarray(extractor.mel_filters), dtype=torch.float32))
        window = torch.hann_window(self.n_fft, dtype=torch.float64)
        time = torch.arange(self.n_fft, dtype=torch.float64)
        frequency = torch.arange(self.n_fft // 2 + 1, dtype=torch.float64)[:, None]
        phase = 2 * math.pi * frequency * time / self.n_fft
        basis = torch.cat([torch.cos(phase), -torch.sin(phase)]) * window
        self.register_buffer("basis", basis.float().unsqueeze(1))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        waveform = nn.functional.pad(waveform, (0, max(0, self.samples - waveform.shape[-1])))[..., : self.samples]
        padded = nn.functional.pad(waveform.unsqueeze(1), (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        basis: torch.Tensor = self.basis  # type: ignore[assignment]
        filters: torch.Tensor = self.filters  # type: ignore[assignment]
        spectrum = nn.functional.conv1d(padded, basis, stride=self.hop)
        real, imaginary = spectrum.chunk(2, dim=1)
        power = (real**2 + imaginary**2)[..., :-1]
        mel = torch.clamp(filters.T @ power, min=1e-10).log10()
        floor = mel.amax(dim=(-2, -1), keepdim=True) - 8.0
        return (torch.maximum(mel, floor) + 4.0) / 4.0


class WaveformNormalisation(nn.Module):
    """``Wav2Vec2FeatureExtractor(do_normalize=True)``: zero mean, unit variance per utterance."""

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mean = waveform.mean(-1, keepdim=True)
        variance = waveform.var(-1, keepdim=True, unbiased=False)
        return (waveform - mean) / torch.sqrt(variance + 1e-7)


class AudioClassifier(nn.Module):
    """Waveform ``[batch, samples]`` to logits: the extractor's preprocessing, the model, ``.logits``.

    The transformers model's own children (and top-level parameters) are registered here under
    their own names, so that layers are named as in transformers (``wav2vec2.encoder.layers.3``),
    in this module and in every export of it; the model object itself is kept unregistered."""

    def __init__(self, model: nn.Module, preprocess: nn.Module, input_name: str) -> None:
        super().__init__()
        self.preprocess = preprocess
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, parameter in model.named_parameters(recurse=False):
            self.register_parameter(name, parameter)
        for name, buffer in model.named_buffers(recurse=False):
            self.register_buffer(name, buffer)
        object.__setattr__(self, "transformers_model", model)
        self.input_name = input_name

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        model: Any = object.__getattribute__(self, "transformers_model")
        return model(**{self.input_name: self.preprocess(waveform)}).logits


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"model {path.parent}: {path.name} cannot be read ({error}); check the folder") from None


def _check_weights(folder: Path) -> None:
    present = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not present:
        raise ModelError(f"model {folder} has a {CONFIG} but no weights ({' or '.join(WEIGHT_FILES[:2])}); "
                         "save the model with save_pretrained")
    if present[0] == "pytorch_model.bin":
        try:  # the weights are opened by transformers next; refuse a pickle that is more than tensors first
            torch.load(str(folder / present[0]), map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:
            raise ModelError(f"model {folder}: pytorch_model.bin is not a plain state dict (loaded weights-only: "
                             f"{str(error).splitlines()[0][:160]}); save it with safetensors") from None


def _refuse_partial(folder: Path, info: Mapping[str, Any], built: str, named: Sequence[str]) -> None:
    """A checkpoint is audited only with every weight it names loaded, never with a random head."""
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(entry[0]) if isinstance(entry, (tuple, list)) else str(entry)
                        for entry in info.get("mismatched_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    if not (missing or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:6])}" + (f" and {len(missing) - 6} more" if len(missing) > 6 else ""))
    if mismatched:
        parts.append(f"mismatched {', '.join(mismatched[:6])}")
    if unexpected:
        parts.append(f"unused {', '.join(unexpected[:4])}" + (" ..." if len(unexpected) > 4 else ""))
    head = (f" (the checkpoint names {', '.join(named)}, which transformers does not build)"
            if named and built not in named else "")
    raise ModelError(f"model {folder}: its weights do not fill {built}{head}: {'; '.join(parts)}; these would be "
                     "random, so the model is not audited. Save the model with its head, or load it in Python with "
                     "its own class and pass python:module:factory")


def frontend_from_preprocessor(folder: Path, config: Any, extractor: Any | None) -> FrontEndSpec:
    """The front-end spec a folder implies: waveform at the extractor's rate, labels from ``id2label``."""
    id2label = {int(key): str(value) for key, value in (config.id2label or {}).items()}
    emotions = [id2label.get(i, f"LABEL_{i}") for i in range(int(config.num_labels))]
    rate = int(getattr(extractor, "sampling_rate", 16_000) or 16_000)
    duration = None
    if config.model_type == "whisper" and extractor is not None:  # its encoder takes max_source_positions * 2 frames
        duration = int(extractor.n_samples) / rate
    return FrontEndSpec(sample_rate=rate, features=Features(kind="waveform"), normalisation="none",
                        layout=["batch", "time"], duration_s=duration, input_name="input_values", emotions=emotions)


def load_pretrained(folder: Path, frontend: FrontEndSpec | None = None, *, origin: str | None = None) -> "TransformersModel":
    """A ``save_pretrained`` folder as a TargetModel, fully offline."""
    transformers = require_transformers()
    raw = _read_json(folder / CONFIG)
    _check_weights(folder)
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (ValueError, KeyError, OSError) as error:
        raise ModelError(f"model {folder}: transformers cannot read its {CONFIG} ({str(error).splitlines()[0][:160]}); "
                         f"is model_type {raw.get('model_type')!r} known to transformers {transformers.__version__}?") from None
    extractor = None
    if (folder / PREPROCESSOR).is_file():
        try:
            extractor = transformers.AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
        except (ValueError, KeyError, OSError) as error:
            raise ModelError(f"model {folder}: its {PREPROCESSOR} cannot be read ({str(error).splitlines()[0][:160]})") from None
    elif frontend is None:
        raise ModelError(f"model {folder} has no {PREPROCESSOR}, so its sampling rate and normalisation are unknown; "
                         "save the feature extractor beside it (extractor.save_pretrained) or pass --frontend SPEC")
    import safetensors  # transformers' own dependency

    try:
        model, info = transformers.AutoModelForAudioClassification.from_pretrained(
            str(folder), local_files_only=True, output_loading_info=True)
    except ValueError as error:  # no audio-classification class for this config
        raise ModelError(f"model {folder}: transformers has no audio-classification model for model_type "
                         f"{config.model_type!r} ({str(error).splitlines()[0][:120]}); ser-audit audits classifiers "
                         "(AutoModelForAudioClassification)") from None
    except RuntimeError as error:
        if "mismatched" not in str(error):
            raise
        # transformers 5 raises where 4 reported the sizes in the loading info (``_refuse_partial``).
        raise ModelError(f"model {folder}: its saved weights do not fit the shapes its {CONFIG} gives (most often "
                         f"the classifier's: {config.num_labels} labels in the config); make num_labels and id2label "
                         "match the saved head") from None
    except (OSError, EOFError, pickle.UnpicklingError, safetensors.SafetensorError) as error:  # a damaged file
        raise ModelError(f"model {folder}: its weights cannot be read ({type(error).__name__}: "
                         f"{str(error).splitlines()[0][:160] if str(error) else ''}); save the model again "
                         "(model.save_pretrained)") from None
    _refuse_partial(folder, info, type(model).__name__, list(raw.get("architectures") or []))
    reads = type(extractor).__name__ if extractor is not None else None
    if config.model_type != "whisper" and (getattr(model, "main_input_name", "input_values") != "input_values"
                                           or reads not in (None, "Wav2Vec2FeatureExtractor")):
        raise ModelError(f"model {folder} ({type(model).__name__}) reads the features {reads or 'its feature extractor'} "
                         "computes (a spectrogram, not the waveform), which ser-audit does not reproduce; it audits "
                         "waveform checkpoints (wav2vec2, HuBERT, WavLM, data2vec-audio and kin) and Whisper")
    if config.model_type == "whisper":
        if extractor is None or not hasattr(extractor, "mel_filters"):
            raise ModelError(f"model {folder}: a Whisper classifier needs its WhisperFeatureExtractor "
                             f"({PREPROCESSOR}) for the log-mel")
        preprocess: nn.Module = WhisperLogMel(extractor)
        input_name = "input_features"
    else:
        preprocess = WaveformNormalisation() if getattr(extractor, "do_normalize", False) else nn.Identity()
        input_name = "input_values"
    spec = frontend or frontend_from_preprocessor(folder, config, extractor)
    wrapped = TransformersModel(AudioClassifier(model.eval(), preprocess, input_name), spec, folder=folder)
    wrapped.loading = {
        "class": type(model).__name__,
        "model_type": str(config.model_type),
        "preprocessing": ("Whisper log-mel" if config.model_type == "whisper"
                          else "waveform normalised per utterance (do_normalize)"
                          if isinstance(preprocess, WaveformNormalisation) else "none (do_normalize false)"),
        "encoder_normalisation": _encoder_normalisation(config),
        "padding": PADDING_POLICY,
        "transformers": transformers.__version__,
        "origin": origin or str(folder),
    }
    return wrapped


def _encoder_normalisation(config: Any) -> str:
    norm = getattr(config, "feat_extract_norm", None)
    stable = getattr(config, "do_stable_layer_norm", None)
    parts = [f"feature encoder {norm}-norm"] if norm else []
    if stable is not None:
        parts.append("pre-LN blocks (stable layer norm)" if stable else "post-LN blocks")
    return ", ".join(parts) or "layer norm"


class TransformersModel(EagerTorchModel):
    """A transformers audio classifier behind ``AudioClassifier``. Its layers are named as in transformers
    (``wav2vec2.encoder.layers.3``); ``layers`` lists the blocks (``ser_audit.models.blocks``), ``--layers all``
    adds the leaves, and the default taps are the encoder blocks and the projector, as for its exports."""

    format = "transformers"

    def __init__(self, module: AudioClassifier, frontend: FrontEndSpec, *, folder: Path) -> None:
        super().__init__(module, frontend, path=folder)
        self.folder = folder
        self.loading: dict[str, str] = {}

    @property
    def classifier(self) -> Any:
        """The transformers model (``...ForSequenceClassification``), typed loosely as transformers is optional."""
        return object.__getattribute__(self.module, "transformers_model")

    def _encoder(self) -> tuple[str, Any]:
        """The transformer encoder (the module holding the blocks in ``layers``) and its name."""
        for name, module in self.module.named_modules():
            if name.split(".")[-1] == "encoder" and isinstance(getattr(module, "layers", None), nn.ModuleList):
                return name, module
        raise ModelError(f"model {self.folder}: no transformer encoder (a module 'encoder' with 'layers') was found")

    def encoder_blocks(self) -> list[str]:
        """``...encoder.layers.N``, from the module names as every format reads them (``models.blocks``)."""
        from ser_audit.models.blocks import encoder_blocks, transformer_blocks

        return encoder_blocks(transformer_blocks([name for name, _ in self.module.named_modules() if name]))

    def _closing_norm(self) -> nn.Module | None:
        """The encoder's LayerNorm after its last block (pre-LN encoders and Whisper), else None."""
        _, encoder = self._encoder()
        norm = getattr(encoder, "layer_norm", None)
        stable = "StableLayerNorm" in type(encoder).__name__ or self.classifier.config.model_type == "whisper"
        return norm if stable else None

    def _layer_entries(self) -> list[LayerEntry]:
        # The preprocessing is the feature extractor's, not a layer of the model.
        return [entry for entry in super()._layer_entries() if entry.name.split(".")[0] != "preprocess"]

    def _time_axes(self, names: list[str], base: dict[str, np.ndarray]) -> dict[str, int | None]:
        """As read by running the model, completed from the encoder's sequence length where a fixed-length
        input hides it (Whisper's log-mel floor follows each utterance's peak, so no change stays late)."""
        found = super()._time_axes(names, base)
        blocks = self.encoder_blocks()
        frames = base[blocks[0]].shape[1] if blocks and base[blocks[0]].ndim == 3 else None
        for name in names:
            shape = base[name].shape
            if found[name] is None and frames and len(shape) == 3:
                found[name] = 1 if shape[1] == frames else 2 if shape[2] == frames else None
        return found

    def _downstream(self, layer: str) -> Downstream:
        """Sliced from the block list (no fx): the encoder blocks after the tap, the closing norm,
        the projector and the mean over time; the head is the classifier."""
        config = self.classifier.config
        head = getattr(self.classifier, "classifier", None)
        if not isinstance(head, nn.Linear):
            raise Unavailable("the classifier's head is not one linear layer")
        if layer == "projector":  # after the weighted sum, where the model has one: only the mean and the head follow
            return Downstream(body=MeanOverTime(), head=head, description="the mean over time of the projector")
        if getattr(config, "use_weighted_layer_sum", False):
            raise Unavailable("the head reads a weighted sum of every encoder block, not the tapped one alone")
        blocks = self.encoder_blocks()
        projector = getattr(self.classifier, "projector", None)
        if layer in blocks:
            rest = [dict(self.module.named_modules())[name] for name in blocks[blocks.index(layer) + 1:]]
            first = dict(self.module.named_modules())[blocks[0]]
            body: nn.Module = EncoderRemainder(rest, first, self._closing_norm(), projector)
            return Downstream(body=body, head=head, description=f"encoder blocks after {layer}, then the projector "
                              "and the mean over time")
        raise Unavailable(f"{layer} is not an encoder block; the same-architecture cut is sliced from the block list")

    @property
    def sha256(self) -> str:
        """One hash over the folder's config, preprocessor and weight files."""
        digest = hashlib.sha256()
        for name in (CONFIG, PREPROCESSOR, *WEIGHT_FILES):
            if (self.folder / name).is_file():
                digest.update(f"{name}:{file_sha256(self.folder / name)}\n".encode())
        return digest.hexdigest()


class MeanOverTime(nn.Module):
    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.mean(1)


class EncoderRemainder(nn.Module):
    """Encoder blocks from the tap on: each block's hidden states (a WavLM block also passes its
    relative position bias on, recomputed here from the first block, since it depends on length only)."""

    def __init__(self, blocks: Sequence[nn.Module], first: nn.Module, norm: nn.Module | None,
                 projector: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.norm = norm if norm is not None else nn.Identity()
        self.projector = projector if projector is not None else nn.Identity()
        parameters = inspect.signature(first.forward).parameters
        self.biased = "position_bias" in parameters
        self.masked = "attention_mask" in parameters  # Whisper's blocks take it without a default
        self.first = first if self.biased else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        bias, options = None, {"attention_mask": None} if self.masked else {}
        if self.biased and len(self.blocks) and self.first is not None:
            bias = self.first(hidden, **options)[1]
        for block in self.blocks:
            output = block(hidden, position_bias=bias, **options) if self.biased else block(hidden, **options)
            if isinstance(output, (tuple, list)):
                hidden = output[0]
                bias = output[1] if self.biased and len(output) > 1 else bias
            else:
                hidden = output
        return self.projector(self.norm(hidden)).mean(1)


def resolve_hub(name: str) -> Path:
    """``hf:ORG/NAME``: a snapshot from the local Hugging Face cache, or downloaded where a network exists."""
    require_transformers()
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DependencyError(f"hf:{name} needs huggingface_hub; run: {INSTALL_HINT}") from None
    patterns = ["*.json", "*.safetensors", "*.bin", "*.txt"]
    try:
        return Path(snapshot_download(name, allow_patterns=patterns, local_files_only=True))
    except Exception:  # not cached: try the network
        pass
    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as error:
        first = str(error).splitlines()[0][:140] if str(error) else type(error).__name__
        raise ModelError(f"model hf:{name} is not in the local Hugging Face cache and cannot be fetched ({first}); "
                         f"where a network exists run `hf download {name} --local-dir DIR` and pass DIR") from None

