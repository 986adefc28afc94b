"""Object uids: random version-4 UUIDs, distinct, never shared with a forked child."""

from __future__ import annotations

import os
import uuid

from pilothouse.services.apiserver.registry import _UidSource


def test_uids_are_distinct_version_4_uuids_across_refills() -> None:
    source = _UidSource()
    uids = [source() for _ in range(3 * _UidSource.BATCH + 7)]
    assert len(set(uids)) == len(uids)
    assert all(uuid.UUID(u).version == 4 and uuid.UUID(u).variant == uuid.RFC_4122
               for u in uids)


def test_a_forked_child_does_not_reuse_the_parents_buffer() -> None:
    source = _UidSource()
    source()  # fills the buffer
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next uid and leave at once
        os.close(read)
        os.write(write, source().encode())
        os._exit(0)
    os.close(write)
    child_uid = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child_uid != source()
