"""``ser-audit cache info | verify | clear``: what the cache holds, whether it is sound, and emptying it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from ser_audit import api
from ser_audit.cli import options
from ser_audit.cli.output import check_cache_dir
from ser_audit.cli.progress import STDERR
from ser_audit.cli.render import plain, print_json, print_table
from ser_audit.embeddings import maintenance

app = typer.Typer(help="Show, verify and clear the cache (embeddings, corpora, reference models).",
                  no_args_is_help=True)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


@app.command("info")
def info_command(cache_dir: options.CacheDirOption = None, json_output: options.JsonOption = False) -> None:
    """Size of the cache per model and corpus (embeddings), and of its corpora and reference models."""
    folder = cache_dir or api.default_cache_dir()
    if not folder.is_dir() and not json_output:
        STDERR.print(plain(f"nothing cached: {folder} does not exist"))
        return
    entries, others = maintenance.inventory(folder), maintenance.other_contents(folder)
    by_model, by_corpus = maintenance.totals(entries, "model"), maintenance.totals(entries, "corpus")
    if json_output:
        print_json({"cache_dir": str(folder), "embeddings": [asdict(e) for e in entries], "by_model": by_model,
                    "by_corpus": by_corpus, "other": others})
        return
    print_table(f"embeddings in {folder}", ["entry", "model", "corpus", "layers", "size", "left by killed runs"],
                [(e.key, e.model, e.corpus, e.layers, _mib(e.bytes), _mib(e.leftover_bytes) if e.leftover_bytes else "")
                 for e in entries])
    print_table("embeddings per model", ["model", "size"], [(name, _mib(size)) for name, size in by_model.items()])
    print_table("embeddings per corpus", ["corpus", "size"], [(name, _mib(size)) for name, size in by_corpus.items()])
    print_table("other cache contents", ["folder", "size"], [(name, _mib(size)) for name, size in others.items()])


@app.command("verify")
def verify_command(cache_dir: options.CacheDirOption = None, json_output: options.JsonOption = False) -> None:
    """Check every cached embedding file against its recorded length and sha256; exit 1 if any fails
    (a run computes failing files again by itself)."""
    folder = cache_dir or api.default_cache_dir()
    entries = maintenance.verify(folder)
    failing = [e for e in entries if e.failures]
    if json_output:
        print_json({"cache_dir": str(folder), "entries": len(entries), "failing": [asdict(e) for e in failing]})
    else:
        for entry in failing:
            for failure in entry.failures:
                print_table(f"failing entry {entry.key} ({entry.model} on {entry.corpus})", ["problem"], [(failure,)])
        STDERR.print(f"{len(entries)} embedding entr{'y' if len(entries) == 1 else 'ies'} checked, "
                     f"{len(failing)} failing")
    if failing:
        raise typer.Exit(1)


@app.command("clear")
def clear_command(
    cache_dir: options.CacheDirOption = None,
    everything: Annotated[bool, typer.Option("--all", help="Also corpora and trained reference models.")] = False,
) -> None:
    """Remove the cached embeddings (with --all, the whole cache). Run it while no audit uses the cache."""
    folder = cache_dir or api.default_cache_dir()
    check_cache_dir(folder)
    freed = maintenance.clear(folder, everything=everything)
    STDERR.print(plain(f"removed {_mib(freed)} from {folder}{'' if everything else '/embeddings'}"))
