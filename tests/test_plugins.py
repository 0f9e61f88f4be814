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
