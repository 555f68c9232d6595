"""ApproximateTimeSynchronizer: message_filters' semantics without its combinatorial search."""
import threading
import time

from hypothesis import given, settings, strategies as st
import pytest

from vlmad_ros.sync import ApproximateTimeSynchronizer

MS = 1_000_000
T0 = 1_000 * 10**9   # stamps start here: rclpy.time.Time (in message_filters) rejects negatives

try:
    import message_filters
    _NO_MF = ''
except ImportError as err:   # not on PyPI: tools/setup.sh installs it from ../shared/ros-wheels
    message_filters = None
    _NO_MF = f'message_filters is not installed ({err}); make setup installs it from ros-wheels'
needs_message_filters = pytest.mark.skipif(message_filters is None, reason=_NO_MF)


def run_theirs(events, n, queue_size, slop_ns):
    """Feed the same events to the real message_filters.ApproximateTimeSynchronizer."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header
    sources = [message_filters.SimpleFilter() for _ in range(n)]
    out = []
    sync = message_filters.ApproximateTimeSynchronizer(sources, queue_size, slop_ns / 1e9)
    sync.registerCallback(lambda *msgs: out.append([m.item for m in msgs]))
    for index, stamp, item in events:
        msg = _Stamped(Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9)), item)
        sources[index].signalMessage(msg)
    return out


class _Stamped:
    """A message with a header, carrying the test's item so sets can be compared."""

    def __init__(self, header, item):
        self.header = header
        self.item = item


def run_ours(events, n, queue_size, slop_ns):
    sync = ApproximateTimeSynchronizer(n, queue_size, slop_ns / 1e9, reset_after=1e6)
    out = []
    sync.register_callback(lambda stamp, items: out.append(items))
    for index, stamp, item in events:
        sync.add(index, stamp, item)
    return out, sync


def test_regular_streams_make_every_set():
    n, period = 7, 50 * MS
    events = []
    for k in range(40):
        for i in range(n):
            events.append((i, k * period + i * MS, (i, k)))   # 0..6 ms skew within a set
    out, sync = run_ours(events, n, queue_size=5, slop_ns=20 * MS)
    assert len(out) == 40
    assert all([item[1] for item in s] == [k] * n for k, s in enumerate(out))
    assert sync.stats.success_ratio == 1.0


def test_each_message_used_once_and_queue_bounded():
    sync = ApproximateTimeSynchronizer(2, queue_size=3, slop=0.01)
    for k in range(10):
        sync.add(0, k * 100 * MS, ('a', k))           # input 1 silent: queue 0 overflows
    assert sync.stats.dropped == 7
    assert sync.add(1, 9 * 100 * MS + MS, ('b', 9)) == (9 * 100 * MS + MS, [('a', 9), ('b', 9)])
    assert sync.add(1, 9 * 100 * MS + 2 * MS, ('b', 9.5)) is None   # ('a', 9) already used


def test_slop_is_strict_like_message_filters():
    sync = ApproximateTimeSynchronizer(2, 5, slop=0.010)
    sync.add(0, 0, 'a')
    assert sync.add(1, 10 * MS, 'b') is None          # spread == slop: not a set
    assert sync.add(1, 10 * MS - 1, 'c') is not None


def test_time_jump_back_resets_queues():
    sync = ApproximateTimeSynchronizer(2, 5, slop=0.01, reset_after=1.0)
    sync.add(0, 100 * 10**9, 'old')
    sync.add(0, 3 * 10**9, 'new0')                    # a bag looped
    assert sync.stats.resets == 1
    assert sync.add(1, 3 * 10**9 + MS, 'new1') == (3 * 10**9 + MS, ['new0', 'new1'])
    assert sync.add(1, 100 * 10**9, 'late') is None   # 'old' went with the reset


def test_callback_runs_outside_the_lock():
    sync = ApproximateTimeSynchronizer(2, 5, slop=0.01)
    seen = []

    def callback(stamp, items):
        # Another thread can add while we are in the callback (no deadlock, no lock held).
        t = threading.Thread(target=sync.add, args=(0, stamp + 10 * 10**9, 'x'))
        t.start()
        t.join(2.0)
        seen.append(not t.is_alive())

    sync.register_callback(callback)
    sync.add(0, 0, 'a')
    sync.add(1, 0, 'b')
    assert seen == [True]


def test_cost_is_not_combinatorial():
    # 7 inputs x 50 queue with every message within slop of each other but no fitting set:
    # message_filters would walk 50^6 combinations; we answer in milliseconds.
    n, q = 7, 50
    sync = ApproximateTimeSynchronizer(n, q, slop=0.05)
    for i in range(n - 1):
        for k in range(q):
            sync.add(i, 10**9 + (k if i % 2 else -k) * 10**6 // 2 + (i - 3) * 45 * MS, (i, k))
    t0 = time.perf_counter()
    sync.add(n - 1, 10**9, 'last')
    assert time.perf_counter() - t0 < 0.5


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='queue_size'):
        ApproximateTimeSynchronizer(3, 0, 0.1)
    with pytest.raises(ValueError, match='slop'):
        ApproximateTimeSynchronizer(3, 5, 0.0)
    with pytest.raises(IndexError):
        ApproximateTimeSynchronizer(3, 5, 0.1).add(3, 0, None)


@st.composite
def arrival_orders(draw):
    n = draw(st.integers(2, 4))
    frames = draw(st.integers(1, 8))
    period = draw(st.sampled_from([50, 100]))
    events = []
    for k in range(frames):
        for i in range(n):
            if draw(st.floats(0, 1)) < 0.1:
                continue                                   # lost message
            jitter = draw(st.integers(-30, 30))
            events.append((i, T0 + (k * period + jitter) * MS, (i, k, jitter)))
    # Random arrival order within a bounded delay (messages from different inputs interleave).
    delays = [draw(st.integers(0, 120)) for _ in events]
    order = sorted(range(len(events)), key=lambda j: events[j][1] + delays[j] * MS)
    return n, [events[j] for j in order]


@needs_message_filters
@settings(max_examples=300, deadline=None)
@given(arrival_orders(), st.integers(1, 6), st.sampled_from([10, 25, 40, 70]))
def test_same_sets_as_message_filters(case, queue_size, slop_ms):
    n, events = case
    # One stamp per input at most once (message_filters keys by stamp).
    seen, unique = set(), []
    for e in events:
        if (e[0], e[1]) not in seen:
            seen.add((e[0], e[1]))
            unique.append(e)
    theirs = run_theirs(unique, n, queue_size, slop_ms * MS)
    ours, sync = run_ours(unique, n, queue_size, slop_ms * MS)
    assert ours == theirs
    stamp_of = {e[2]: e[1] for e in unique}
    for s in ours:                               # every set really is within slop
        stamps = [stamp_of[item] for item in s]
        assert max(stamps) - min(stamps) < slop_ms * MS
    assert sync.stats.used == n * len(ours)


@needs_message_filters
def test_same_sets_as_message_filters_on_regular_skewed_streams():
    n, slop = 3, 0.03
    events = [(i, T0 + k * 50 * MS + ((i * 7 + k * 13) % 41 - 20) * MS) for k in range(30)
              for i in range(n)]
    theirs = run_theirs([(i, s, s) for i, s in events], n, 5, int(slop * 1e9))
    ours, _ = run_ours([(i, s, s) for i, s in events], n, 5, int(slop * 1e9))
    assert len(ours) >= 15 and ours == theirs   # most frames make a set; none differs


def test_optional_inputs_join_when_they_fit_and_are_none_otherwise():
    out = []
    sync = ApproximateTimeSynchronizer(3, queue_size=5, slop=0.05)
    sync.register_callback(lambda stamp, items: out.append(items))
    sync.set_optional([1])
    sync.add(0, T0, 'a0')
    sync.add(2, T0 + 10 * MS, 'c0')                  # input 1 silent: a set without it
    assert out == [['a0', None, 'c0']]
    sync.add(1, T0 + 100 * MS, 'b1')                 # optional input sends again: it joins
    sync.add(0, T0 + 100 * MS, 'a1')
    sync.add(2, T0 + 130 * MS, 'c1')
    assert out[-1] == ['a1', 'b1', 'c1']
    sync.add(1, T0 + 300 * MS, 'b2')                 # too far from the next set: left out
    sync.add(0, T0 + 200 * MS, 'a2')
    sync.add(2, T0 + 200 * MS, 'c2')
    assert out[-1] == ['a2', None, 'c2']
    assert sync.stats.used == 7 and sync.stats.sets == 3
    sync.set_optional([])                            # required again: no set without it
    sync.add(0, T0 + 400 * MS, 'a3')
    sync.add(2, T0 + 400 * MS, 'c3')
    assert len(out) == 3
    with pytest.raises(ValueError, match='at least one required'):
        sync.set_optional([0, 1, 2])
