from __future__ import annotations

import pytest

import ser_audit.plugins as plugins
from ser_audit.errors import ConfigError


class _Entry:
    def __init__(self, name: str, value: str, target: object = None) -> None:
        self.name, self.value, self.target = name, value, target

    def load(self) -> object:
        if self.target is None:
            raise ImportError(f"No module named {self.value.split(':')[0]!r}")
        return self.target


def test_a_broken_plugin_is_named_and_skipped_or_fatal_when_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [_Entry("good", "pkg.good:THING", target="thing"), _Entry("broken", "pkg.broken:THING")]
    monkeypatch.setattr(plugins, "entry_points", lambda group: entries)
    with pytest.warns(UserWarning, match="skipping widget plugin 'broken'"):
        assert plugins.load_plugins("group", kind="widget") == {"good": "thing"}
    with pytest.raises(ConfigError, match="widget plugin 'broken' .* failed to load"):
        plugins.load_plugins("group", kind="widget", strict=True)


def test_a_renderer_plugin_writes_its_own_format(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A third-party format registers like the bundled ones and is written beside report.json."""
    from importlib.metadata import entry_points

    from ser_audit.report.model import CorpusInfo, Environment, ModelInfo, Report, Tool
    from ser_audit.report.writer import parse_formats, write_report

    class CsvRenderer:
        suffix = ".csv"

        def render(self, report: Report) -> str:
            return "seed\n" + str(report.seed) + "\n"

    def with_plugin(group: str) -> list:
        found = list(entry_points(group=group))
        return [*found, _Entry("csv", "pkg.csv:CsvRenderer", target=CsvRenderer)] if group == "ser_audit.renderers" else found

    monkeypatch.setattr(plugins, "entry_points", with_plugin)
    assert parse_formats("csv,md") == ("json", "csv", "md")
    with pytest.raises(ConfigError, match="choose from csv,html,json,junit,md"):
        parse_formats("pdf")
    report = Report(tool=Tool(version="0"), command=[], seed=7, created="t", finished="t",
                    environment=Environment(python="3", platform="p", packages={}),
                    model=ModelInfo(path="m.onnx", sha256="0" * 64, format="onnx", frontend={}, layers=[]),
                    corpus=CorpusInfo(name="c", manifest_sha256="0", n_utterances=0, n_speakers=0, by_gender={},
                                      by_emotion={}))
    written = write_report(report, tmp_path / "out", parse_formats("csv"))
    assert [path.name for path in written] == ["report.json", "report.csv"]
    assert (tmp_path / "out" / "report.csv").read_text() == "seed\n7\n"


def test_executors_are_registered_plugins() -> None:
    from ser_audit.execution import executor, executors

    assert {"auto", "local", "processes", "ray"} <= set(executors())
    assert list(executor("local").map(lambda job: job * 2, [1, 2, 3])) == [2, 4, 6]
    with pytest.raises(ConfigError, match="--executor 'dask': choose one of auto, local, processes, ray"):
        executor("dask")
