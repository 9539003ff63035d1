"""What the usage journal costs a request: the synchronous work `UsageStore.record` does on the
event loop before the answer's last byte, with and without the journal, and what a per-record
fsync would add. Prints a Markdown table of medians (µs per record).

    .venv/bin/python bench/usage_journal.py [--records 20000] [--runs 5] [--dir /path]

`--dir` should be on the disk the server's data_dir is on (default: a temporary directory).
The database writes happen in the background in batches either way and are not counted here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from server.pipeline.context import Attempt, UsageRecord
from server.usage import rows
from server.usage.journal import Journal

RECORD = UsageRecord(
    request_id="req_0123456789abcdef0123456789abcdef",
    created=1_796_000_000.25,
    key_id="key_0123456789",
    organization_id="acme",
    session_id="session-1",
    user="alice",
    model_requested="fake-echo",
    model="fake-echo",
    provider="fake",
    attempts=(Attempt("fake", "fake-echo", "ok", 12.5, prompt_tokens=3, completion_tokens=4),),
    prompt_tokens=3,
    completion_tokens=4,
    cached_tokens=0,
    estimated=False,
    cost_usd=0.0001,
    latency_ms=20.0,
    ttft_ms=5.0,
    status="ok",
    http_status=200,
    streamed=True,
    cancelled=False,
)


def per_record(work: Callable[[], None], records: int) -> float:
    """µs per call of `work`, `records` calls."""
    start = time.perf_counter()
    for _ in range(records):
        work()
    return (time.perf_counter() - start) / records * 1e6


def row_only() -> None:
    rows.row(RECORD, "uid0")


def journaled(journal: Journal) -> Callable[[], None]:
    def work() -> None:
        journal.append(orjson.dumps(rows.row(RECORD, "uid0")))

    return work


def fsynced(journal: Journal) -> Callable[[], None]:
    def work() -> None:
        journal.append(orjson.dumps(rows.row(RECORD, "uid0")))
        os.fsync(journal._open.fd)  # what the journal does not do per record

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        journal = Journal(Path(tmp) / "journal")
        cases = {
            "row (values bounded), no journal": row_only,
            "row + JSON line + write() (the journal)": journaled(journal),
        }
        fsync_records = max(1, args.records // 100)  # a flush to disk each: far slower
        results: dict[str, list[float]] = {n: [] for n in [*cases, "... + fsync() per record"]}
        for _ in range(args.runs):  # taking turns, so other load on the machine hits each alike
            for name, work in cases.items():
                results[name].append(per_record(work, args.records))
                if (segment := journal.seal_when_full()) is not None:
                    journal.discard(segment)  # as the writer does once the rows are stored
            results["... + fsync() per record"].append(per_record(fsynced(journal), fsync_records))
        journal.close(committed=True)
    print(f"| µs per record (median of {args.runs} runs) | µs |")
    print("|---|---:|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
