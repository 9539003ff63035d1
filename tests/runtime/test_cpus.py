"""`physical_cores`: llama.cpp's default thread count, from a sysfs tree made here."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from server.runtime.config import Config
from server.runtime.cpus import physical_cores
from server.runtime.workers import worker_threads


def sysfs(root: Path, cores: dict[int, tuple[int, int]]) -> Path:
    """cpuN/topology/{physical_package_id,core_id} for each CPU N: (package, core)."""
    for cpu, (package, core) in cores.items():
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return root


def test_two_cores_without_smt_are_two_threads(tmp_path: Path) -> None:
    root = sysfs(tmp_path, {0: (0, 0), 1: (0, 1)})
    assert physical_cores(root, {0, 1}) == 2


def test_smt_siblings_count_once(tmp_path: Path) -> None:
    root = sysfs(tmp_path, {0: (0, 0), 1: (0, 0), 2: (0, 1), 3: (0, 1)})
    assert physical_cores(root, {0, 1, 2, 3}) == 2
    assert physical_cores(root, {0, 1}) == 1  # only one core is ours to run on


def test_the_same_core_id_on_two_packages_is_two_cores(tmp_path: Path) -> None:
    root = sysfs(tmp_path, {0: (0, 0), 1: (1, 0)})
    assert physical_cores(root, {0, 1}) == 2


def test_without_a_topology_every_allowed_cpu_counts(tmp_path: Path) -> None:
    assert physical_cores(tmp_path, {0, 1, 2}) == 3


def test_this_machine_has_at_least_one() -> None:
    assert physical_cores() >= 1


@pytest.mark.parametrize(("workers", "expected"), [(1, 2), (2, 1), (3, 1)])
def test_workers_share_the_cores_out(
    monkeypatch: pytest.MonkeyPatch, workers: int, expected: int
) -> None:
    monkeypatch.setattr("server.runtime.workers.physical_cores", lambda: 2)
    config = replace(Config(), workers=workers)
    assert worker_threads(config) == ["--n-threads", str(expected)]


def test_workers_keep_a_given_thread_count_and_need_none_without_a_model() -> None:
    assert worker_threads(replace(Config(), workers=2, n_threads=3)) == []
    assert worker_threads(replace(Config(), workers=2, provider="fake")) == []
