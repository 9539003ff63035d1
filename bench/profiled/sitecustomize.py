"""Loaded first by a Python started with this directory on PYTHONPATH (`bench/calls.py`):
SIGUSR1 turns cProfile on in the main thread, SIGUSR2 turns it off and writes the stats to
`$TOKENWIRE_PROFILE.<pid>`. Without that variable it does nothing."""

from __future__ import annotations

import cProfile
import os
import signal
from types import FrameType

_OUT = os.environ.get("TOKENWIRE_PROFILE")
_PROFILE = cProfile.Profile()


def _on(signum: int, frame: FrameType | None) -> None:
    _PROFILE.enable()


def _off(signum: int, frame: FrameType | None) -> None:
    _PROFILE.disable()
    _PROFILE.dump_stats(f"{_OUT}.{os.getpid()}")


if _OUT:
    signal.signal(signal.SIGUSR1, _on)
    signal.signal(signal.SIGUSR2, _off)
