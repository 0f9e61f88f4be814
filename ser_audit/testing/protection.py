"""A planted target for protection: one layer carries gender twice, linearly and only nonlinearly.

Linear removal (LEACE) can take the first copy out; nothing linear can take the second, so an
honest re-audit must still find gender there, and a protection verdict must not claim privacy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ser_audit.testing import F0_CHANNEL, LLD_FRONTEND


class LinearAndSpreadPitch(nn.Module):
    """``[batch, 32, time]`` descriptors to ``[batch, 3, time]``.

    Channel 0 is log F0 on every frame (unvoiced frames take the utterance's voiced mean): its mean
    over time tells women from men, a linear copy. Channel 1 alternates in sign from frame to frame
    with an amplitude that grows with the speaker's F0: its mean over time is zero for everyone,
    its spread is not, a copy only a nonlinear reading finds. Channel 2 is the energy.
    """

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        f0 = descriptors[:, F0_CHANNEL]
        voiced = (f0 > 0).float()
        log_f0 = torch.log(f0.clamp_min(1.0))
        level = (log_f0 * voiced).sum(-1, keepdim=True) / voiced.sum(-1, keepdim=True).clamp_min(1.0)
        filled = voiced * log_f0 + (1 - voiced) * level
        sign = 1.0 - 2.0 * (torch.arange(f0.shape[-1], device=f0.device) % 2).float()
        # The channel's level sits near 0.7 for the synthetic women and 0.2 for the men.
        amplitude = torch.sigmoid((level - 0.45) * 20.0) * 1.5 + 0.25
        return torch.stack([filled, sign * amplitude, descriptors[:, 0]], dim=1)


class TwiceLeaking(nn.Module):
    """``both`` (``LinearAndSpreadPitch``), then a mean over time and an emotion head."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.both = LinearAndSpreadPitch()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(3, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.flatten(self.pool(self.both(features))))


def write_twice_leaking(folder: Path, seed: int = 0) -> tuple[str, Path]:
    """``TwiceLeaking`` as a user would hand it over: (``python:`` MODEL string, ``--weights`` file)."""
    from ser_audit.frontend.spec import METADATA_KEY

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"twice-leaking-{seed}.pt"
    torch.save({"state_dict": TwiceLeaking().state_dict(), METADATA_KEY: LLD_FRONTEND.model_dump_json()}, weights)
    return "python:ser_audit.testing.protection:TwiceLeaking", weights
