"""The ``ser-audit`` command. Errors become one line on stderr and an exit code here, and only here.

Exit codes: 0 done and every gate passed; 1 a gate failed (the report is still written);
2 bad input or usage; 3 internal failure; 130 interrupted (Ctrl-C). ``--debug`` (anywhere on the line) shows
tracebacks; ``--strict`` makes every plugin problem (one that fails to load, two under one name) an error.
"""

from __future__ import annotations

import sys
import traceback

import typer

from ser_audit.cli import audit, cache, corpus, gate, layers, leakage, protect, report, robustness, zoo
from ser_audit.dependencies import require_torch
from ser_audit.devices import configure_threads
from ser_audit.errors import SerAuditError
from ser_audit.plugins import strict_plugins

EXIT_OK, EXIT_GATE_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
# Commands that only read and render saved reports: they run where torch cannot be imported.
WITHOUT_TORCH = {"report", "gate", "cache"}

app = typer.Typer(
    name="ser-audit",
    help="Audit speech emotion recognition models for private-attribute leakage and adversarial robustness.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("layers")(layers.layers)
app.command("leakage")(leakage.leakage)
app.command("robustness")(robustness.robustness)
app.command("harden")(robustness.harden)
app.command("protect")(protect.protect)
app.command("audit")(audit.audit)
app.command("report")(report.report)
app.command("gate")(gate.gate)
app.add_typer(corpus.app, name="corpus")
app.add_typer(zoo.app, name="zoo")
app.add_typer(cache.app, name="cache")


def _one_line(message: str) -> str:
    """Control characters (a path's newline, say) spelled as escapes: the message stays on one line."""
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in message)


def _fail(message: str) -> None:
    sys.stderr.write(f"ser-audit: error: {_one_line(message)}\n")


def _needs_torch(args: list[str]) -> bool:
    command = next((a for a in args if not a.startswith("-")), None)
    return command is not None and command not in WITHOUT_TORCH and not {"--help", "-h"} & set(args)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug, strict = "--debug" in args, "--strict" in args
    args = [a for a in args if a not in ("--debug", "--strict")]
    try:
        if _needs_torch(args):
            require_torch()
            configure_threads()
        # Without standalone mode, typer returns the code of a typer.Exit instead of raising it.
        with strict_plugins(strict):
            code = app(args=args, prog_name="ser-audit", standalone_mode=False)
    except SerAuditError as error:
        if debug:
            traceback.print_exc()
        _fail(str(error))
        return EXIT_BAD_INPUT
    except typer.Exit as done:
        return int(done.exit_code)
    except typer.Abort:
        _fail("aborted")
        return EXIT_INTERNAL
    except typer.TyperException as error:  # usage errors: unknown option, bad value, missing argument
        if debug:
            traceback.print_exc()
        context = getattr(error, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        _fail(f"{error.format_message() or 'missing command'}{hint}")  # a group without its command says nothing
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # the one place that turns unexpected failures into exit 3
        if debug:
            traceback.print_exc()
        _fail(f"internal error: {type(error).__name__}: {error}"
              + ("" if debug else " (rerun with --debug for the traceback)"))
        return EXIT_INTERNAL
    if code == EXIT_INTERRUPTED:  # typer turns Ctrl-C inside a command into this code, silently
        _fail("interrupted")
    return code if isinstance(code, int) else EXIT_OK


def entry() -> None:
    sys.exit(main())
