"""The learner node with one checkpoint write failing as on a full disk (for tests/ros/test_shutdown.py).

``ENOSPC_AT=N``: the N-th write of a checkpoint's weights writes 4 KiB, then raises ``OSError(ENOSPC)``,
as a write to a full file system does; every other write is real.
"""
import errno
import os
import sys

import regconsist_ros.models.checkpoint as ck

_real = ck.save_file
_calls = [0]


def _save_file(tensors, path, metadata=None):
    _calls[0] += 1
    if _calls[0] == int(os.environ["ENOSPC_AT"]):
        with open(path, "wb") as f:
            f.write(b"\0" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return _real(tensors, path, metadata=metadata)


ck.save_file = _save_file

if __name__ == "__main__":
    from regconsist_ros.ros.nodes.learner import main

    sys.exit(main())
