"""Tiny transformers audio classifiers written with ``save_pretrained``, built offline from configs.

Each is what a user hands over (config.json, model.safetensors, preprocessor_config.json), only
small: a few narrow blocks, random weights. ``KINDS`` covers the encoders ser-audit reads:
wav2vec2 with a group-norm feature encoder, WavLM with layer norm and stable (pre-LN) blocks,
HuBERT, data2vec-audio and a Whisper-encoder classifier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EMOTIONS = ("angry", "happy", "neutral", "sad")
KINDS = ("wav2vec2", "wavlm", "hubert", "data2vec-audio", "whisper")

_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
              classifier_proj_size=16, num_labels=len(EMOTIONS))
_CONVOLUTIONS = dict(conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4),
                     num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _labels() -> dict[str, Any]:
    return {"id2label": dict(enumerate(EMOTIONS)), "label2id": {name: i for i, name in enumerate(EMOTIONS)}}


def tiny_checkpoint(kind: str, folder: Path, *, seed: int = 0, head: bool = True, do_normalize: bool = True,
                    weighted_layer_sum: bool = False) -> Path:
    """Write a tiny ``kind`` classifier to ``folder`` as ``save_pretrained`` does; ``head=False`` drops
    the classifier and projector weights from the saved file (a checkpoint saved without its head);
    ``weighted_layer_sum`` makes its head read a learnt weighted sum of every encoder block (not Whisper)."""
    import torch
    import transformers as hf

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "whisper":
        whisper: dict[str, Any] = dict(
            d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
            decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=50,
            classifier_proj_size=16, num_labels=len(EMOTIONS), **_labels())
        config: Any = hf.WhisperConfig(**whisper)
        model: Any = hf.WhisperForAudioClassification(config)
        extractor: Any = hf.WhisperFeatureExtractor(feature_size=16, sampling_rate=16_000, hop_length=160,
                                                    chunk_length=1, n_fft=400)
    else:
        configs = {
            "wav2vec2": lambda: hf.Wav2Vec2Config(feat_extract_norm="group", do_stable_layer_norm=False),
            "wavlm": lambda: hf.WavLMConfig(feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=16,
                                            max_bucket_distance=64),
            "hubert": lambda: hf.HubertConfig(feat_extract_norm="group", do_stable_layer_norm=False),
            "data2vec-audio": lambda: hf.Data2VecAudioConfig(num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2),
        }
        if kind not in configs:
            raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
        config = configs[kind]()
        settings = {**_SMALL, **_CONVOLUTIONS, **_labels()}
        if kind == "data2vec-audio":
            settings.update(num_conv_pos_embeddings=4, num_conv_pos_embedding_layers=1)
        for key, value in settings.items():
            setattr(config, key, value)
        config.num_feat_extract_layers = len(config.conv_dim)
        config.use_weighted_layer_sum = weighted_layer_sum
        model = hf.AutoModelForAudioClassification.from_config(config)
        extractor = hf.Wav2Vec2FeatureExtractor(sampling_rate=16_000, do_normalize=do_normalize,
                                                return_attention_mask=kind == "wavlm")
    model.eval()
    if head:
        model.save_pretrained(folder)
    else:
        state = {key: value for key, value in model.state_dict().items()
                 if not key.startswith(("classifier.", "projector."))}
        model.save_pretrained(folder, state_dict=state)
    extractor.save_pretrained(folder)
    return folder
