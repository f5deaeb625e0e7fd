"""Counting messages lost before the callbacks from publication sequence numbers (online/counters.py)."""
from regconsist_ros.online.counters import LossCounter


def test_sequence_gaps_per_publisher():
    c = LossCounter()
    for seq in (1, 2, 5, 6, 10):  # 3, 4, 7, 8, 9 lost
        c.seen("color", b"A", seq)
    for seq in (7, 8, 9):  # another publisher on the same topic starts at 7: not a loss
        c.seen("color", b"B", seq)
    assert c.seen("color", b"B", 12) == 2
    c.lost("color", 3)  # the RMW's own event: reported beside the gaps, not added to them
    snap = c.snapshot()
    assert snap["color"] == {"received": 9, "sequence_gap": 7, "message_lost": 3}
    assert c.total == 7


def test_restarts_and_unknown_numbers_count_nothing():
    c = LossCounter()
    c.seen("pose", b"A", 100)
    assert c.seen("pose", b"A", 3) == 0  # numbers went back: a restarted publisher
    assert c.seen("pose", b"A", 4) == 0
    assert c.seen("pose", b"A", None) == 0 and c.seen("pose", b"A", 0) == 0
    assert c.snapshot()["pose"] == {"received": 5, "sequence_gap": 0, "message_lost": 0}
    c.unsupported.add("info")
    assert c.snapshot()["info"]["message_lost_event"] == "unsupported"
