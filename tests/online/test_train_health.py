"""The learner's train-loop health (issue 18): train_error set by a failing slice and cleared when training
recovers; checkpoint failures counted; the inbox's byte budget."""
import pytest

from regconsist_ros.online.counters import ByteBudget, TrainHealth


def test_train_error_clears_when_training_recovers():
    h, logged = TrainHealth(), []
    outcomes = iter([RuntimeError("uv1 has pixels outside the 128x96 image"), {"regconsist": 0},
                     {"regconsist": 5}])

    def train():
        o = next(outcomes)
        if isinstance(o, Exception):
            raise o
        return o

    assert h.step(train, logged.append) is None
    assert h.status() == {"train_error": "RuntimeError: uv1 has pixels outside the 128x96 image", "train_errors": 1}
    assert "training step failed" in logged[0]
    assert h.step(train, logged.append) == {"regconsist": 0}  # nothing trained (buffers not ready): still set
    assert h.error is not None
    assert h.step(train, logged.append) == {"regconsist": 5}  # a slice trained: cleared, the count stays
    assert h.status() == {"train_errors": 1}


def test_a_checkpoint_that_cannot_be_written_is_counted_and_training_goes_on():
    h, logged = TrainHealth(), []

    def full_disk():
        raise OSError(28, "No space left on device")

    assert h.step(full_disk, logged.append) == {}
    st = h.status()
    assert st["checkpoint_failures"] == 1 and "No space left" in st["checkpoint_error"] and "train_error" not in st
    assert "training goes on" in logged[0]


def test_byte_budget():
    b = ByteBudget(1.0)  # 1 MB
    assert b.take(600_000) and not b.take(600_000)  # the second would go over
    b.give(600_000)
    assert b.take(5_000_000)  # one message larger than the cap passes into an empty queue
    assert not b.take(1)
    b.give(5_000_000)
    assert b.held == 0
    with pytest.raises(ValueError, match="cap_mb"):
        ByteBudget(0)
