"""Auxiliary model inputs (``zeros``, ``constant``, ``length``, ``mask``), made from the front-end spec
and the primary batch.

Callers feed a model its primary input (and P4's neutral reference); the model layer completes
the rest here, so that listing layers, extraction and probes all feed the same tensors. They are
functions of the batch size and the primary input's length only: constants to the probes, which
never perturb them.

>>> from ser_audit.frontend.spec import ExtraInput
>>> state = ExtraInput(name="state", source="zeros", batch_axis=1)
>>> auxiliary_tensor(state, DeclaredInput((2, "batch", 16), "float32"), batch=3, length=8000).shape
(2, 3, 16)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ser_audit.errors import ModelError
from ser_audit.frontend.spec import ExtraInput, FrontEndSpec

_DEFAULT_DTYPES = {"zeros": "float32", "constant": "float32", "length": "int64", "mask": "int64"}


@dataclass(frozen=True)
class DeclaredInput:
    """What a graph declares of one input.

    Attributes:
        shape: Each dim, an int where fixed, its name (or ``?``) where symbolic; None when undeclared.
        dtype: numpy's name of the element type (``float32``, ``int64``); None when undeclared.
    """

    shape: tuple[int | str, ...] | None
    dtype: str | None

    def describe(self) -> str:
        shape = "shape undeclared" if self.shape is None else "[" + ", ".join(map(str, self.shape)) + "]"
        return f"{self.dtype or 'type undeclared'} {shape}"


def auxiliary_tensor(extra: ExtraInput, declared: DeclaredInput | None, *, batch: int, length: int,
                     origin: str = "the model") -> np.ndarray:
    """The tensor fed to ``extra`` for a primary batch of ``batch`` utterances, ``length`` long on its time axis.

    Raises:
        ModelError: a zeros or constant input whose shape neither the spec nor the graph fixes.
    """
    dtype = np.dtype(extra.dtype or (declared.dtype if declared is not None and declared.dtype else None)
                     or _DEFAULT_DTYPES[extra.source])
    if extra.source == "length":
        return np.full(batch, length, dtype=dtype)
    if extra.source == "mask":
        return np.ones((batch, length), dtype=dtype)
    shape = _shape(extra, declared, batch, origin)
    if extra.source == "zeros":
        return np.zeros(shape, dtype=dtype)
    assert extra.value is not None  # the spec's validator requires it
    return np.full(shape, extra.value, dtype=dtype)


def _shape(extra: ExtraInput, declared: DeclaredInput | None, batch: int, origin: str) -> tuple[int, ...]:
    if extra.shape is not None:
        return tuple(batch if dim == "batch" else int(dim) for dim in extra.shape)
    if declared is None or declared.shape is None:
        if extra.source == "constant":
            return ()
        raise ModelError(
            f"{origin}: extra input {extra.name!r} (zeros) needs a shape and the model declares none; give it in "
            "the front-end spec's extra_inputs, e.g. \"shape\": [2, \"batch\", 64]"
        )
    dims: list[int | str] = list(declared.shape)
    axis = extra.batch_axis
    if axis is not None and axis >= len(dims):
        raise ModelError(
            f"{origin}: extra input {extra.name!r} has batch_axis {axis} but the graph declares "
            f"{len(dims)} axes ({declared.describe()}); fix batch_axis in the front-end spec's extra_inputs"
        )
    if axis is None and dims and not isinstance(dims[0], int):
        axis = 0  # by default the first axis, where the graph leaves it open (not a scalar, not a fixed [1])
    if axis is not None:
        dims[axis] = batch
    symbolic = [(axis, dim) for axis, dim in enumerate(dims) if not isinstance(dim, int)]
    if symbolic:
        named = ", ".join(f"axis {axis} ({dim})" for axis, dim in symbolic)
        example = [("batch" if index == axis else (dim if isinstance(dim, int) else 1))
                   for index, dim in enumerate(declared.shape)]
        raise ModelError(
            f"{origin}: extra input {extra.name!r} is declared {declared.describe()} and {named} is symbolic and not "
            f"the batch (batch_axis {axis}); give its sizes in the front-end spec's extra_inputs, e.g. "
            f"\"shape\": {_json(example)}, or point batch_axis at the batch"
        )
    return tuple(int(dim) for dim in dims)


def auxiliary_inputs(spec: FrontEndSpec, declared: Mapping[str, DeclaredInput], *, batch: int, length: int,
                     origin: str = "the model") -> dict[str, np.ndarray]:
    """Every auxiliary input of ``spec``, by name."""
    return {extra.name: auxiliary_tensor(extra, declared.get(extra.name), batch=batch, length=length, origin=origin)
            for extra in spec.auxiliary_inputs}


def primary_extent(spec: FrontEndSpec, primary_shape: tuple[int, ...]) -> tuple[int, int]:
    """(batch size, length along the time axis) of a primary input."""
    return primary_shape[0], primary_shape[list(spec.layout).index("time")]


def complete_inputs(spec: FrontEndSpec, inputs: Mapping[str, np.ndarray], declared: Mapping[str, DeclaredInput],
                    *, origin: str = "the model") -> dict[str, np.ndarray]:
    """``inputs`` with every auxiliary input made for its primary batch. They are functions of the primary
    input alone, so whatever a caller passed under their names (features, say) is replaced."""
    if not spec.auxiliary_inputs:
        return dict(inputs)
    batch, length = primary_extent(spec, np.shape(inputs[spec.input_name]))
    return {**inputs, **auxiliary_inputs(spec, declared, batch=batch, length=length, origin=origin)}


def describe(extra: ExtraInput) -> str:
    """One line for the report: what an auxiliary input was fed."""
    dtype = f" ({extra.dtype})" if extra.dtype else ""
    if extra.source == "length":
        return f"the primary input's length per utterance{dtype}"
    if extra.source == "mask":
        return f"an attention mask of ones over each utterance{dtype}"
    shape = f", shape {_json(extra.shape)}" if extra.shape is not None else (
        f", shaped as the graph declares, batch on axis {extra.batch_axis}" if extra.batch_axis is not None
        else ", shaped as the graph declares")
    what = "zeros" if extra.source == "zeros" else f"the constant {extra.value:g}"
    return f"{what}{dtype}{shape}"


def missing_inputs_error(path: object, missing: Mapping[str, DeclaredInput]) -> ModelError:
    """A graph needs inputs the spec does not feed: name each, with its declared shape and type, and how to feed it."""
    listed = ", ".join(f"{name!r} {declared.describe()}" for name, declared in missing.items())
    examples = ", ".join(_json(_suggestion(name, declared)) for name, declared in missing.items())
    return ModelError(
        f"model {path} needs input(s) its front-end spec does not feed: {listed}; declare each in the spec's "
        f"extra_inputs (sources zeros, constant, length, mask, neutral_same_speaker), e.g. {examples}, in "
        "MODEL.frontend.json or --frontend FILE"
    )


def _suggestion(name: str, declared: DeclaredInput) -> dict[str, object]:
    """A plausible declaration: a constant for an integer scalar (a sample rate), else zeros with the batch on
    the first symbolic axis."""
    if declared.shape is not None and len(declared.shape) == 0:
        return {"name": name, "source": "constant", "value": 16000 if "int" in (declared.dtype or "") else 0}
    symbolic = [axis for axis, dim in enumerate(declared.shape or ()) if not isinstance(dim, int)]
    suggestion: dict[str, object] = {"name": name, "source": "zeros"}
    if symbolic and symbolic[0] != 0:
        suggestion["batch_axis"] = symbolic[0]
    return suggestion


def _json(value: object) -> str:
    return json.dumps(value)
