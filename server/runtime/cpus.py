"""How many cores this process may compute on: llama.cpp's thread count.

llama-cpp-python's default is half the logical CPUs, a guess at the physical
cores that halves generation on a host without SMT: on these 2-core machines
it ran the model on one thread, 22 tokens/s, where two gave 33 with the event
loop still answering in ~2 ms. Counting the distinct cores of the CPUs we may
run on (Linux sysfs) is right both with SMT and without it.
"""

from __future__ import annotations

import os
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")


def physical_cores(sys_cpu: Path = SYS_CPU, cpus: set[int] | None = None) -> int:
    """Distinct (package, core) pairs among `cpus` (default: this process's affinity);
    the number of those CPUs where the topology cannot be read."""
    allowed = cpus if cpus is not None else _allowed()
    cores = set()
    for cpu in allowed:
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(allowed))
        cores.add((package, core))
    return max(1, len(cores))


def _allowed() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))
