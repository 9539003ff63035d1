"""A clock tests move by hand: windows and expiries without sleeping."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 1_000_800.0) -> None:  # a window start of 60 s and of 1 h
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
