"""``ser-audit layers MODEL``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ser_audit import api
from ser_audit.cli import options
from ser_audit.cli.output import check_cache_dir
from ser_audit.cli.progress import observer_for
from ser_audit.cli.render import print_json, print_table
from ser_audit.errors import ConfigError


def layers(
    model: options.ModelArgument,
    frontend: options.FrontendOption = None,
    weights: options.WeightsOption = None,
    trust_pickle: options.TrustPickleOption = False,
    cache_dir: options.CacheDirOption = None,
    seed: options.SeedOption = 0,
    which: Annotated[Optional[str], typer.Option(
        "--layers", help="'all': also the leaves inside a transformer's blocks (listed by default: the blocks).",
    )] = None,
    json_output: options.JsonOption = False,
    quiet: options.QuietOption = False,
) -> None:
    """List tappable layers: index, name, op/kind, output shape."""
    source = api.ModelSource(model, frontend=frontend, weights=weights, trust_pickle=trust_pickle)
    if cache_dir is not None:
        check_cache_dir(cache_dir)
    if which not in (None, "all"):
        raise ConfigError(f"--layers {which!r}: the layers command takes --layers all (every leaf) or nothing")
    rows = api.list_layers(source, cache_dir=cache_dir, seed=seed, observer=observer_for(quiet), everything=which == "all")
    if json_output:
        print_json([row.model_dump() for row in rows])
        return
    print_table(f"layers of {model}", ["index", "name", "kind", "shape", "time axis", "note"],
                [(r.index, r.name, r.kind, "x".join(map(str, r.shape)), "" if r.time_axis is None else r.time_axis,
                  f"refused: {r.refused}" if r.refused else f"{r.frames} frames an utterance, regrouped" if r.frames
                  else "") for r in rows])
