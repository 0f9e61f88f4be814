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


@contextmanager
def no_stdout() -> Iterator[None]:
    """Standard output closed at the file-descriptor level for the block: the TorchScript exporter prints the
    whole IR graph from C++ when it fails, which Python's ``redirect_stdout`` cannot catch and which would
    corrupt ``--json`` output."""
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 1)
            try:
                yield
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
    finally:
        os.close(saved)
