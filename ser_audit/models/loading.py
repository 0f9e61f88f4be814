"""MODEL strings to TargetModel: dispatch to the format that claims one, and the torch loaders they share."""

from __future__ import annotations

import importlib
import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import torch

from ser_audit.errors import ModelError, SerAuditError
from ser_audit.frontend.spec import METADATA_KEY, FrontEndSpec, load_spec_file, missing_spec_error, parse_spec
from ser_audit.hashing import source_sha256
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.interface import TargetModel
from ser_audit.progress import NULL_OBSERVER, ProgressObserver


def sidecar_spec(path: Path) -> FrontEndSpec | None:
    """``MODEL.frontend.json`` beside the model (``model.frontend.json`` or ``model.onnx.frontend.json``)."""
    for candidate in (path.with_suffix(".frontend.json"), path.with_name(path.name + ".frontend.json")):
        if candidate.is_file():
            return load_spec_file(candidate)
    return None


def load_model(
    spec: str,
    *,
    frontend: Path | None = None,
    weights: Path | None = None,
    trust_pickle: bool = False,
    cache_dir: Path,
    seed: int = 0,
    observer: ProgressObserver = NULL_OBSERVER,
    strict: bool = False,
    device: str = "cpu",
) -> TargetModel:
    """Load any supported model through the format that claims it (``ser_audit.models.formats``);
    the front-end spec comes from ``--frontend``, a sidecar, the folder or the file itself. A ``zoo:`` model
    not yet cached trains on ``device`` (resolved); the model returned is on the CPU whatever it is."""
    from ser_audit.models.formats import ModelRequest, claiming_format

    if not spec.strip():
        raise ModelError("MODEL is empty; pass a .onnx/.pt/.pt2 file, a transformers save_pretrained folder, zoo:NAME "
                         "or python:module:factory")
    request = ModelRequest(spec, frontend=load_spec_file(frontend) if frontend else None, weights=weights,
                           trust_pickle=trust_pickle, cache_dir=cache_dir, seed=seed, observer=observer, device=device)
    path = request.path
    if path.is_file() and path.stat().st_size == 0:
        raise ModelError(f"model {path} is empty (0 bytes)")
    found = claiming_format(request, strict=strict)
    if found is not None and weights is not None and not getattr(found, "takes_weights", False):
        raise ModelError(f"--weights is for python:module:factory models; {spec} carries its own weights "
                         "(leave --weights out)")
    if found is not None:
        return found.load(request)
    if not path.exists():
        raise ModelError(f"model {path} does not exist; pass a .onnx/.pt/.pt2 file, a transformers save_pretrained "
                         "folder, zoo:NAME or python:module:factory")
    if path.is_dir():
        raise ModelError(f"model {path} is a folder without a config.json; pass the model file itself, or a folder "
                         "written by transformers' save_pretrained")
    if _parses_as_onnx(path):
        raise ModelError(f"model {path} is an ONNX graph under another extension; rename it to {path.stem}.onnx")
    raise ModelError(f"model {path} is neither ONNX (.onnx) nor a torch archive (.pt/.pt2); check the file")


def _parses_as_onnx(path: Path) -> bool:
    """Whether an unclaimed file is an ONNX model after all (one saved as .bin or .model)."""
    import onnx

    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # protobuf raises its own types on anything else
        return False
    return len(proto.graph.node) > 0 and len(proto.graph.output) > 0


def runs_on_its_spec(model: TargetModel, origin: str) -> TargetModel:
    """Run the front-end spec's example input through an eager module now (listing its layers, which
    every command does next): a spec that does not fit the module (another feature kind, n_mels or
    layout) fails here, as the spec's fault, instead of deep inside the first batch.

    Raises:
        ModelError: naming the model, the example input's shape and the module's complaint.
    """
    try:
        model.layers()
    except SerAuditError:
        raise
    except Exception as error:  # whatever the user's module raises on an input it cannot take
        try:
            shapes = ", ".join(f"{name} {list(x.shape)}" for name, x in model.example_inputs(batch=2).items())
        except Exception:  # the spec cannot even make an input
            shapes = "none could be made"
        raise ModelError(
            f"model {origin} fails on the input its front-end spec makes ({shapes}; {type(error).__name__}: "
            f"{str(error).splitlines()[0][:160] if str(error) else ''}); check the spec (--frontend, the sidecar "
            "MODEL.frontend.json or the one in the checkpoint) against what the module takes"
        ) from None
    return model


def load_pickle(path: Path, frontend: FrontEndSpec | None, trust_pickle: bool) -> TargetModel:
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except RuntimeError as error:  # a zip file that is no torch archive
        raise ModelError(f"model {path} is a zip file but not a torch archive ({str(error).splitlines()[0][:120]}); "
                         "check the file") from None
    except pickle.UnpicklingError:
        if not trust_pickle:
            raise ModelError(
                f"model {path} is a pickled torch module; unpickling runs arbitrary code. Export it to ONNX or "
                "TorchScript, pass python:module:factory --weights FILE, or add --trust-pickle if you trust its source"
            ) from None
        module = torch.load(str(path), map_location="cpu", weights_only=False)
        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"model {path} holds a {type(module).__name__}, not a torch.nn.Module") from None
        if frontend is None:
            raise missing_spec_error(str(path))
        return EagerTorchModel(module, frontend, path=path)
    if isinstance(payload, dict) and "reference_model" in payload:
        return load_checkpoint(path, frontend, payload)
    raise ModelError(
        f"model {path} holds weights only; pass python:module:factory --weights {path} so ser-audit can build the module"
    )


def load_checkpoint(path: Path, frontend: FrontEndSpec | None = None, payload: dict[str, Any] | None = None) -> EagerTorchModel:
    """A reference-model checkpoint written by ``zoo train`` / the zoo cache."""
    from ser_audit.models.zoo import get_reference_model

    payload = payload or torch.load(str(path), map_location="cpu", weights_only=True)
    reference = get_reference_model(payload["reference_model"])
    module = reference.build(n_classes=payload["n_classes"], **payload["config"])
    module.load_state_dict(payload["state_dict"])
    spec = frontend or parse_spec(payload[METADATA_KEY], origin=str(path))
    model = EagerTorchModel(module, spec, path=path)
    model.training = json.loads(payload["metrics"])
    return model


def _import_from_here(module_name: str) -> Any:
    """The module, from the working folder if it is nowhere else, as uvicorn and gunicorn import module:attribute
    (the console script puts its own folder on the path instead); the folder goes last, shadowing nothing."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        here = os.getcwd()
        if error.name != module_name.split(".")[0] or here in sys.path or "" in sys.path:
            raise
        sys.path.append(here)
        return importlib.import_module(module_name)


def _import_hint(module_name: str, error: Exception) -> str:
    """What to do when the factory's module is nowhere on the import path."""
    top = module_name.split(".")[0]
    if not isinstance(error, ModuleNotFoundError) or error.name != top:
        return ""
    return "; run from the folder that holds it, add that folder to PYTHONPATH, or install its package"


def load_factory(target: str, weights: Path | None, frontend: FrontEndSpec | None) -> EagerTorchModel:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ModelError(f"model python:{target}: write python:package.module:factory")
    try:
        factory = getattr(_import_from_here(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ModelError(f"model python:{target}: cannot import the factory ({error}){_import_hint(module_name, error)}") \
            from None
    if weights is None:
        raise ModelError(f"model python:{target} needs --weights FILE (a state dict, loaded with weights_only=True)")
    if not weights.is_file():
        raise ModelError(f"--weights {weights} is a folder; pass the state dict file" if weights.is_dir()
                         else f"--weights {weights} does not exist")
    try:
        payload = torch.load(str(weights), map_location="cpu", weights_only=True)
    except EOFError:
        raise ModelError(f"--weights {weights} is empty or cut short; save the state dict again") from None
    except (pickle.UnpicklingError, RuntimeError) as error:
        raise ModelError(f"--weights {weights} is not a plain state dict ({str(error).splitlines()[0]})") from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"--weights {weights} holds no state dict")
    build_kwargs = payload.get("config", {}) if "state_dict" in payload else {}
    if "n_classes" in payload:
        build_kwargs = {"n_classes": payload["n_classes"], **build_kwargs}
    if not callable(factory):
        raise ModelError(f"model python:{target}: {attribute} is a {type(factory).__name__}, not a callable; name a "
                         "class or function that returns a torch.nn.Module")
    try:
        module = factory(**build_kwargs)
    except TypeError as error:  # the factory does not take the checkpoint's config
        raise ModelError(f"model python:{target}: calling {attribute}(**{sorted(build_kwargs)}) failed ({error}); "
                         "the factory must take the keyword arguments saved under 'config' in --weights") from None
    except Exception as error:  # the user's own code failed
        raise ModelError(f"model python:{target}: {attribute}() raised {type(error).__name__}: "
                         f"{str(error).splitlines()[0][:160] if str(error) else ''}") from None
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"model python:{target}: {attribute}() returned a {type(module).__name__}, not a "
                         "torch.nn.Module; name the factory that builds the model")
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    resized = [f"{key} {list(state[key].shape)} for {list(value.shape)}" for key, value in expected.items()
               if key in state and hasattr(state[key], "shape") and tuple(state[key].shape) != tuple(value.shape)]
    if missing or unexpected or resized:
        def listed(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

        parts = [f"{len(keys)} key(s) {what} ({listed(keys)})" for what, keys in (
            ("missing", missing), ("unexpected", unexpected), ("of another shape", resized)) if keys]
        raise ModelError(f"--weights {weights} do not fit python:{target}: {'; '.join(parts)}; pass the weights "
                         "of this factory's model (a state dict saved from it)")
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(f"--weights {weights} do not fit python:{target} ({str(error).splitlines()[0]})") from None
    spec = frontend or sidecar_spec(weights)
    if spec is None and METADATA_KEY in payload:
        spec = parse_spec(payload[METADATA_KEY], origin=str(weights))
    if spec is None:
        raise missing_spec_error(f"python:{target}")
    model = EagerTorchModel(module, spec, path=weights)
    model.code_sha256 = _code_sha256(target, factory, module)
    return model


def _code_sha256(target: str, factory: object, module: torch.nn.Module) -> str:
    """The source of the module the factory is named in, of the factory, and of every class in the model it
    built (a block kept in another file included)."""
    named = sys.modules.get(target.partition(":")[0])
    return source_sha256([*([named] if named else []), factory, *(type(sub) for _, sub in module.named_modules())])
