"""
Approximate-time synchronisation of N inputs, live (planner node) and offline (bag reader).

Same parameters and meaning as message_filters.ApproximateTimeSynchronizer (DESIGN.md section 3):
- each input keeps at most `queue_size` messages, keyed by stamp (a repeated stamp replaces the
  message); beyond that the oldest stamp is dropped;
- when a message with stamp t arrives, a set is emitted if one message per input can be chosen
  with max(stamp) - min(stamp) < slop, the new message included; candidates are the messages
  within slop of t; each message is used at most once (the emitted ones leave the queues).
Which set: message_filters tries combinations in the order "each input's candidates sorted by
|stamp - t|, earlier inputs varying slowest" and takes the first that fits. We pick the same set
without enumerating combinations: first the nearest candidate of every input (the first
combination; one pass, O(inputs x queue)); only when that does not fit, a greedy walk in the same
order with a sliding-window feasibility test, so the cost stays polynomial instead of
queue_size^(inputs - 1).
Differences, on purpose: stamps jumping back by more than `reset_after` (a bag loops, a simulator
restarts) clear all queues; the callback runs after the lock is released; inputs can be made
optional (`set_optional`: a silent or stale camera under the planner's missing_camera:=fill):
a set is then matched on the required inputs alone, and each optional input joins with its
nearest message that keeps the spread under slop, or is None in the set.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, List, Optional, Sequence, Tuple

Callback = Callable[[int, List[Any]], None]


@dataclasses.dataclass
class SyncStats:
    """Counters for diagnostics."""

    received: int = 0        # messages added
    used: int = 0            # messages that went out in a set
    sets: int = 0            # sets emitted
    dropped: int = 0         # pushed out of a full queue
    resets: int = 0          # time jumped back

    @property
    def success_ratio(self) -> float:
        """Share of received messages that ended up in a set (1.0 when perfectly synchronised)."""
        return self.used / self.received if self.received else 0.0


class ApproximateTimeSynchronizer:
    """Groups one message per input whose stamps (int nanoseconds) lie within `slop` seconds."""

    def __init__(self, num_inputs: int, queue_size: int, slop: float,
                 reset_after: float = 1.0):
        if num_inputs < 1:
            raise ValueError(f'num_inputs must be >= 1, got {num_inputs}')
        if queue_size < 1:
            raise ValueError(f'queue_size must be >= 1, got {queue_size}')
        if not slop > 0:
            raise ValueError(f'slop must be > 0 seconds, got {slop}')
        if not reset_after > 0:
            raise ValueError(f'reset_after must be > 0 seconds, got {reset_after}')
        self.num_inputs = int(num_inputs)
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(slop * 1e9))
        self.reset_after_ns = int(round(reset_after * 1e9))
        # Per input: list of [stamp_ns, item] in arrival order (message_filters' dict order).
        self._queues: List[List[list]] = [[] for _ in range(self.num_inputs)]
        self._newest: Optional[int] = None
        self._lock = threading.Lock()
        self._callbacks: List[Callback] = []
        self._optional: frozenset = frozenset()
        self.stats = SyncStats()

    def set_optional(self, indices) -> None:
        """Make these inputs optional (None in a set's items when absent); the rest required."""
        optional = frozenset(int(i) for i in indices)
        if len(optional) >= self.num_inputs or any(
                not 0 <= i < self.num_inputs for i in optional):
            raise ValueError(f'optional inputs {sorted(optional)}: need indices in '
                             f'0..{self.num_inputs - 1} and at least one required input')
        with self._lock:
            self._optional = optional

    @property
    def optional(self) -> frozenset:
        return self._optional

    def register_callback(self, callback: Callback) -> None:
        """callback(stamp_ns, items) for every set; stamp_ns = the newest stamp in the set."""
        self._callbacks.append(callback)

    def reset(self) -> None:
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        for q in self._queues:
            q.clear()
        self._newest = None

    def add(self, index: int, stamp_ns: int, item: Any) -> Optional[Tuple[int, List[Any]]]:
        """Add a message of input `index`; returns (stamp_ns, items) when it completed a set."""
        if not 0 <= index < self.num_inputs:
            raise IndexError(f'input index {index} out of range 0..{self.num_inputs - 1}')
        stamp_ns = int(stamp_ns)
        with self._lock:
            self.stats.received += 1
            if self._newest is not None and stamp_ns < self._newest - self.reset_after_ns:
                self._clear()
                self.stats.resets += 1
            if self._newest is None or stamp_ns > self._newest:
                self._newest = stamp_ns
            queue = self._queues[index]
            for entry in queue:
                if entry[0] == stamp_ns:      # same stamp: replace, keep position (dict order)
                    entry[1] = item
                    break
            else:
                queue.append([stamp_ns, item])
            while len(queue) > self.queue_size:
                _remove(queue, min(queue, key=lambda e: e[0]))
                self.stats.dropped += 1
            if not any(e[0] == stamp_ns for e in queue):
                return None                   # the new message itself was the oldest
            chosen = self._match(index, stamp_ns)
            if chosen is None:
                return None
            items = []
            for i, entry in enumerate(chosen):
                items.append(None if entry is None else entry[1])
                if entry is not None:
                    _remove(self._queues[i], entry)
            present = [e for e in chosen if e is not None]
            self.stats.used += len(present)
            self.stats.sets += 1
            result = (max(e[0] for e in present), items)
        for callback in self._callbacks:      # outside the lock: callbacks may add() again
            callback(*result)
        return result

    def _candidates(self, index: int, stamp_ns: int,
                    inputs: Sequence[int]) -> Optional[List[List[list]]]:
        """Per input, entries within slop of the new stamp sorted by distance (stable)."""
        cands = []
        for i in inputs:
            queue = self._queues[i]
            if i == index:
                cands.append([next(e for e in queue if e[0] == stamp_ns)])
                continue
            near = [e for e in queue if abs(e[0] - stamp_ns) <= self.slop_ns]
            if not near:
                return None
            near.sort(key=lambda e: abs(e[0] - stamp_ns))
            cands.append(near)
        return cands

    def _match(self, index: int, stamp_ns: int) -> Optional[List[Optional[list]]]:
        """Match the required inputs (and the new message); add optional ones that fit."""
        required = [i for i in range(self.num_inputs)
                    if i not in self._optional or i == index]
        chosen = self._match_inputs(index, stamp_ns, required)
        if chosen is None:
            return None
        full: List[Optional[list]] = [None] * self.num_inputs
        for i, entry in zip(required, chosen):
            full[i] = entry
        lo, hi = min(e[0] for e in chosen), max(e[0] for e in chosen)
        for i in sorted(self._optional - set(required)):
            fits = [e for e in self._queues[i]
                    if max(hi, e[0]) - min(lo, e[0]) < self.slop_ns]
            if fits:
                full[i] = min(fits, key=lambda e: abs(e[0] - stamp_ns))
                lo, hi = min(lo, full[i][0]), max(hi, full[i][0])
        return full

    def _match_inputs(self, index: int, stamp_ns: int,
                      inputs: Sequence[int]) -> Optional[List[list]]:
        cands = self._candidates(index, stamp_ns, inputs)
        if cands is None:
            return None
        first = [c[0] for c in cands]
        stamps = [e[0] for e in first]
        if max(stamps) - min(stamps) < self.slop_ns:
            return first
        # Greedy in message_filters' order: fix inputs one by one to the nearest candidate that
        # still admits a completion of the remaining inputs.
        chosen: List[list] = []
        for i, options in enumerate(cands):
            for entry in options:
                if _feasible([e[0] for e in chosen] + [entry[0]],
                             [[e[0] for e in c] for c in cands[i + 1:]], self.slop_ns):
                    chosen.append(entry)
                    break
            else:
                return None
        return chosen


def _remove(queue: List[list], entry: list) -> None:
    """Remove by identity (items may be numpy arrays, whose == is elementwise)."""
    for k, e in enumerate(queue):
        if e is entry:
            del queue[k]
            return


def _feasible(fixed: Sequence[int], rest: Sequence[Sequence[int]], slop_ns: int) -> bool:
    """Can one stamp per list in `rest` join `fixed` with max - min < slop? Sliding window."""
    lo, hi = min(fixed), max(fixed)
    if hi - lo >= slop_ns:
        return False
    if not rest:
        return True
    events = sorted((s, j) for j, stamps in enumerate(rest) for s in stamps
                    if hi - slop_ns < s < lo + slop_ns)
    counts = [0] * len(rest)
    covered = 0
    left = 0
    for right in range(len(events)):
        s_r, j_r = events[right]
        counts[j_r] += 1
        covered += counts[j_r] == 1
        # Shrink from the left while the window is too wide for slop with the fixed stamps.
        while max(s_r, hi) - min(events[left][0], lo) >= slop_ns:
            s_l, j_l = events[left]
            counts[j_l] -= 1
            covered -= counts[j_l] == 0
            left += 1
        if covered == len(rest):
            return True
    return False
