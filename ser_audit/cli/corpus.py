"""``ser-audit corpus list | info NAME | synth PRESET --out DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ser_audit import api
from ser_audit.cli import options
from ser_audit.cli.output import check_cache_dir
from ser_audit.cli.progress import STDERR, observer_for
from ser_audit.cli.render import plain, print_json, print_table
from ser_audit.corpus.registry import corpus_options, list_corpora
from ser_audit.corpus.synthetic.presets import get_preset, write_corpus
from ser_audit.errors import ConfigError
from ser_audit.files import check_writable

app = typer.Typer(help="List, inspect and synthesise corpora.", no_args_is_help=True)


@app.command("list")
def list_command(json_output: options.JsonOption = False) -> None:
    """Corpora ser-audit can read: synthetic presets and installed loaders."""
    rows = list_corpora()
    if json_output:
        print_json(rows)
        return
    print_table("corpora", ["name", "kind", "description"], [(r["name"], r["kind"], r["description"]) for r in rows])


@app.command("info")
def info_command(
    name: Annotated[str, typer.Argument(help="Corpus name or manifest path.")],
    corpus_root: options.CorpusRootOption = None,
    corpus_option: options.CorpusOptionOption = None,
    seed: options.SeedOption = 0,
    cache_dir: options.CacheDirOption = None,
    json_output: options.JsonOption = False,
    quiet: options.QuietOption = False,
) -> None:
    """Utterances, speakers, genders, emotions, durations and rates of a corpus, and its options.

    With --json: the report's corpus object.
    """
    if cache_dir is not None:
        check_cache_dir(cache_dir)
    corpus = api.load_corpus(name, cache_dir=cache_dir or api.default_cache_dir(), seed=seed,
                             corpus_root=corpus_root, options=corpus_option or (), observer=observer_for(quiet))
    info = api.corpus_info(corpus, seed=seed)
    if json_output:
        print_json(info.model_dump())
        return
    audio = info.audio or {}
    print_table(f"corpus {info.name}", ["field", "value"], [
        ("utterances", info.n_utterances), ("speakers", info.n_speakers),
        ("by gender", info.by_gender), ("by emotion", info.by_emotion),
        ("duration", f"{audio.get('total_duration_s', 0) / 3600:.2f} h, mean {audio.get('mean_duration_s', 0):.2f} s"),
        ("sample rates", audio.get("sample_rates")), ("manifest sha256", info.manifest_sha256),
    ])
    choices = corpus_options(name)
    if choices:
        print_table("--corpus-option", ["name", "type", "default", "help"],
                    [(o["name"], o["type"], o["default"], o["help"]) for o in choices])


@app.command("synth")
def synth_command(
    preset: Annotated[str, typer.Argument(help="A synthetic preset (`ser-audit corpus list` shows them).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write WAV files and manifest.csv into.")],
    seed: options.SeedOption = 0,
    size: Annotated[Optional[int], typer.Option("--size", min=2, help="Utterances per speaker.")] = None,
    quiet: options.QuietOption = False,
) -> None:
    """Synthesise a preset to WAV files plus a manifest (deterministic by seed)."""
    preset_spec = get_preset(preset)
    check_writable(out, flag="--out", folder=True)
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out {str(out)!r} is a folder that is not empty; give a new or empty folder "
                          "(synth writes a whole corpus and replaces nothing it did not write)")
    manifest = write_corpus(preset_spec, out, seed=seed, per_speaker=size, observer=observer_for(quiet))
    STDERR.print(plain(f"wrote {manifest}"))
