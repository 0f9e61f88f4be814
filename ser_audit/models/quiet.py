"""Silencing the torch exporters' chatter (deprecation notices, optional-package notes) around our calls."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from contextlib import contextmanager
from typing import Iterator

import torch


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
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # advice on the trace, for the model's author
            yield
    finally:
        logger.setLevel(level)


# Loggers through which a failed torch.export attempt prints the whole captured graph (hundreds of lines)
# before it raises; the raise says what the user needs.
_EXPORT_LOGGERS = ("torch.fx.experimental.symbolic_shapes", "torch._dynamo", "torch.export", "torch._export")


@contextmanager
def quiet_export() -> Iterator[None]:
    """Keep torch.export's warnings and graph dumps off stderr; failures still raise."""
    loggers = [logging.getLogger(name) for name in _EXPORT_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        # A failed attempt also print()s the captured graph to stderr itself (torch/export/_trace.py).
        with quiet_torch(), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
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
