"""CNN-4 from P2 (Ren et al., ICASSP 2020): four 5x5 conv layers, each followed by 2x2 max pooling.

P2: conv 64, 128, 256, 512 channels; global max pooling; a fully connected layer; softmax;
log-mel input (16 kHz, window 512, hop 256, 64 mel bins). ``width`` scales the channels
so the model trains on a CPU in about a minute; ``width=1`` is the paper's size.
"""

from __future__ import annotations

from torch import nn

from ser_audit.frontend.spec import Features, FrontEndSpec
from ser_audit.models.zoo import ReferenceModel, Stage


class CNN4(nn.Module):
    """P2's CNN-4. Input ``[batch, 1, mel, time]``, output emotion logits."""

    def __init__(self, n_classes: int, *, width: float = 1.0, hidden: int = 128) -> None:
        super().__init__()
        channels = [max(4, int(round(c * width))) for c in (64, 128, 256, 512)]
        previous = 1
        for index, count in enumerate(channels, start=1):
            setattr(self, f"conv{index}", nn.Conv2d(previous, count, kernel_size=5, padding=2))
            setattr(self, f"relu{index}", nn.ReLU())
            setattr(self, f"pool{index}", nn.MaxPool2d(2))
            previous = count
        self.global_pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(previous, hidden)
        self.fc_relu = nn.ReLU()
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, features):  # type: ignore[no-untyped-def]
        x = features
        for index in range(1, 5):
            x = getattr(self, f"pool{index}")(getattr(self, f"relu{index}")(getattr(self, f"conv{index}")(x)))
        return self.classifier(self.fc_relu(self.fc(self.flatten(self.global_pool(x)))))


def build(n_classes: int = 4, **config: float) -> CNN4:
    return CNN4(n_classes, **config)  # type: ignore[arg-type]


LOG_MEL_P2 = FrontEndSpec(
    sample_rate=16_000,
    features=Features(kind="log_mel", n_fft=512, hop_length=256, n_mels=64),
    layout=["batch", "channel", "freq", "time"],
    duration_s=3.0,
    emotions=[],
)

CNN4_ENTRY = ReferenceModel(
    name="cnn4",
    paper="P2 (Ren et al., ICASSP 2020)",
    description="CNN-4 on 64-band log-mel, width 1/4 (16-128 channels)",
    build=build,
    config={"width": 0.25},
    frontend=LOG_MEL_P2,
    training=Stage(corpus="iemocap-like", target="emotion", epochs=25, optimiser="adam", learning_rate=1e-3, batch_size=32),
    version=1,
)
