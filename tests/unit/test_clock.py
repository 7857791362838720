import time

from identity.clock import FrozenClock, SystemClock


def test_frozen_clock_moves_only_when_told():
    clock = FrozenClock(1000.0)
    assert clock.now() == 1000.0
    assert clock.now() == 1000.0
    clock.advance(2.5)
    assert clock.now() == 1002.5


def test_system_clock_is_the_wall_clock():
    before = time.time()
    now = SystemClock().now()
    assert before <= now <= time.time()
