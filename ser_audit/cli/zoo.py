"""``ser-audit zoo list | train NAME --out FILE``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ser_audit import api
from ser_audit.cli import options
from ser_audit.cli.output import check_cache_dir
from ser_audit.cli.progress import STDERR, observer_for
from ser_audit.cli.render import plain, print_json, print_table
from ser_audit.files import check_writable

app = typer.Typer(help="Bundled reference models.", no_args_is_help=True)


@app.command("list")
def list_command(json_output: options.JsonOption = False, cache_dir: options.CacheDirOption = None,
                 seed: options.SeedOption = 0) -> None:
    """Reference models installed through the ser_audit.models entry point (held-out UAR once trained)."""
    rows = api.reference_model_table(cache_dir=cache_dir, seed=seed)
    if json_output:
        print_json(rows)
        return
    print_table("reference models", ["name", "paper", "parameters", "held-out UAR", "description"],
                [(r["name"], r["paper"], f"{r['parameters']:,}",
                  "not trained yet" if r["held_out_uar"] is None else f"{r['held_out_uar']:.3f}", r["description"])
                 for r in rows])


@app.command("train")
def train_command(
    name: Annotated[str, typer.Argument(help="Reference model name (see `zoo list`).")],
    out: Annotated[Path, typer.Option("--out", help="Output: .onnx, .pt (TorchScript), .pt2 (torch.export) or .ckpt (eager).")],
    seed: options.SeedOption = 0,
    device: options.DeviceOption = "auto",
    cache_dir: options.CacheDirOption = None,
    quiet: options.QuietOption = False,
) -> None:
    """Train on the embedded corpus with a speaker-disjoint held-out session; export with the front-end spec."""
    check_writable(out, flag="--out")
    check_cache_dir(cache_dir)
    metrics = api.train_reference_model(name, out, seed=seed, cache_dir=cache_dir, observer=observer_for(quiet),
                                        device=device)
    STDERR.print(plain(
        f"zoo:{name}: held-out-speaker UAR {metrics['held_out_uar']:.3f}, accuracy {metrics['held_out_accuracy']:.3f} "
        f"(session {metrics['held_out_session']}); wrote {out}"
    ))
