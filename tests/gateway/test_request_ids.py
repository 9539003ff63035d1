"""Request ids: `req_` and 32 hex digits, never repeated, not even across a fork."""

from __future__ import annotations

import os
import re

from gateway.metadata import new_request_id, request_id_from

FORMAT = re.compile(r"req_[0-9a-f]{32}")


def test_new_ids_are_well_formed_and_distinct_across_refills() -> None:
    ids = [new_request_id() for _ in range(1000)]
    assert all(FORMAT.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_request_id()  # the parent has made ids before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode()
    assert FORMAT.fullmatch(child)
    assert child != new_request_id()


def test_a_plain_client_id_is_kept_and_a_bad_one_replaced() -> None:
    assert request_id_from("abc-123") == "abc-123"
    assert FORMAT.fullmatch(request_id_from("has space"))
    assert FORMAT.fullmatch(request_id_from(None))
