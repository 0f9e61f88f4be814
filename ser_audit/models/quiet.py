"""Silencing the torch exporters' chatter (deprecation notices, optional-package notes) around our calls."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def quiet_torch() -> Iterator[None]:
    """Hide warnings and log lines that torch.onnx / torch.jit emit on every export or load.

    They concern torch's own roadmap (TorchScript deprecation) or packages we do not use
    (torchvision operators), not the user's model; genuine failures still raise.
    """
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)
