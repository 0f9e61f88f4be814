from __future__ import annotations

import json

import pytest
import torch

from ser_audit.errors import FrontEndError
from ser_audit.frontend.features import FrontEnd, fit_length
from ser_audit.frontend.spec import TEMPLATE, Features, FrontEndSpec, missing_spec_error, parse_spec


def _spec(**features: object) -> FrontEndSpec:
    return FrontEndSpec(features=Features(**features), layout=["batch", "channel", "freq", "time"], emotions=["a"])


def test_log_mel_layout_and_gradient_reaches_the_waveform() -> None:
    frontend = FrontEnd(_spec(kind="log_mel", n_fft=512, hop_length=256, n_mels=64))
    waveform = (0.1 * torch.randn(2, 16_000)).requires_grad_()
    features = frontend(waveform)
    assert features.shape == (2, 1, 64, 63)
    features.sum().backward()
    assert waveform.grad is not None and waveform.grad.abs().sum() > 0


def test_spectrogram_mu_law_and_band_limit() -> None:
    spec = _spec(
        kind="spectrogram", n_fft=1600, win_length=640, hop_length=160, power=1.0, f_max=4000.0, mu_law=True, window="hamming"
    )
    features = FrontEnd(spec)(0.1 * torch.randn(1, 16_000))
    assert features.shape[2] == 401  # 0-4 kHz of a 1600-point FFT at 16 kHz
    assert 0.0 <= float(features.min()) and float(features.max()) <= 1.0 + 1e-6


def test_mfcc_with_deltas_and_recurrent_layout() -> None:
    spec = FrontEndSpec(
        features=Features(kind="mfcc", n_mfcc=13, deltas=2, n_mels=40), layout=["batch", "time", "freq"], emotions=["a"]
    )
    assert FrontEnd(spec)(0.1 * torch.randn(3, 8000)).shape[::2] == (3, 39)


def test_low_level_descriptors_have_32_channels_and_find_f0() -> None:
    spec = FrontEndSpec(features=Features(kind="lld", n_fft=400, win_length=400, hop_length=160, deltas=1),
                        layout=["batch", "freq", "time"], emotions=["a"])
    t = torch.arange(16_000) / 16_000
    tone = 0.3 * torch.sign(torch.sin(2 * torch.pi * 150 * t))  # a buzzy 150 Hz voice
    descriptors = FrontEnd(spec)(tone[None])
    assert descriptors.shape[1] == 32
    f0 = descriptors[0, 15] * 100
    assert abs(float(f0[f0 > 0].median()) - 150) < 5
    assert float((f0 > 0).float().mean()) > 0.9


def test_waveform_frontend_and_fit_length() -> None:
    spec = FrontEndSpec(features=Features(kind="waveform"), layout=["batch", "time"], duration_s=0.5, emotions=["a"])
    assert FrontEnd(spec)(torch.zeros(2, 8000)).shape == (2, 8000)
    assert len(fit_length(torch.ones(10).numpy(), 4, "center")) == 4
    assert len(fit_length(torch.ones(3).numpy(), 8, "start")) == 8


def test_spec_round_trip_and_errors() -> None:
    assert parse_spec(TEMPLATE.to_json(), origin="x") == TEMPLATE
    with pytest.raises(FrontEndError, match="not valid JSON"):
        parse_spec("{", origin="model.onnx")
    broken = json.loads(TEMPLATE.to_json())
    broken["layout"] = ["time", "batch"]
    with pytest.raises(FrontEndError, match="layout"):
        parse_spec(json.dumps(broken), origin="model.onnx")
    broken = json.loads(TEMPLATE.to_json())
    broken["surprise"] = 1
    with pytest.raises(FrontEndError, match="surprise"):
        parse_spec(json.dumps(broken), origin="model.onnx")


def test_missing_spec_error_shows_a_template() -> None:
    message = str(missing_spec_error("model.onnx"))
    assert "model.onnx.frontend.json" in message or "model.frontend.json" in message
    assert '"features"' in message
