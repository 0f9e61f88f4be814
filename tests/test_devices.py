"""--device and the thread count: parsed before any work, resolved where torch runs."""

from __future__ import annotations

import pytest
import torch

from ser_audit.config import AuditConfig
from ser_audit.devices import CoresLeft, configure_threads, parse_device, resolve_device, usable_cores
from ser_audit.errors import ConfigError


@pytest.mark.parametrize("text,expected", [("auto", "auto"), ("CPU", "cpu"), ("cuda", "cuda"), ("cuda:3", "cuda:3")])
def test_devices_parse(text: str, expected: str) -> None:
    assert parse_device(text) == expected
    assert AuditConfig(model="zoo:cnn4", device=text).device == expected


@pytest.mark.parametrize("text", ["tpu", "cpu:1", "cuda:", "cuda:x", "auto:0", ""])
def test_other_devices_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(ConfigError, match="use auto, cpu, cuda or cuda:N"):
        parse_device(text)


def test_auto_is_cuda_only_where_torch_sees_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AuditConfig(model="zoo:cnn4").device == "auto"  # the default
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ConfigError, match="2 CUDA device"):
        resolve_device("cuda:2")


def test_threads_follow_the_usable_cores_unless_omp_num_threads_says(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
        assert usable_cores() == 1 and configure_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(2)
        assert configure_threads() == 2  # the user's setting stands
    finally:
        torch.set_num_threads(before)


def test_cores_taken_by_starting_workers_are_left_to_them_and_given_back_once_they_are_ready() -> None:
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        taken = [1]
        with CoresLeft(lambda: taken[0]) as lent:
            assert torch.get_num_threads() == 2
            assert all(pool["num_threads"] <= 2 for pool in threadpool_info())
            lent.check()
            assert torch.get_num_threads() == 2, "still importing"
            taken[0] = 0
            lent.check()
            assert torch.get_num_threads() == 3, "ready: given back between steps, before the block ends"
        assert torch.get_num_threads() == 3
        with CoresLeft(lambda: 5):
            assert torch.get_num_threads() == 1  # never none
        assert torch.get_num_threads() == 3
        with pytest.raises(KeyboardInterrupt), CoresLeft(lambda: 1):
            raise KeyboardInterrupt
        assert torch.get_num_threads() == 3
        with CoresLeft(lambda: 0):
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
