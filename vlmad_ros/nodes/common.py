"""
What every vlmad_ros node shares: parameters, QoS names, throttled logging, main().

A bad parameter stops a node at start-up with exit code 2 and a message that names it.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Dict

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.node import Node
from rclpy.qos import ReliabilityPolicy

RELIABILITY = {'best_effort': ReliabilityPolicy.BEST_EFFORT,
               'reliable': ReliabilityPolicy.RELIABLE}


class ParameterError(ValueError):
    """A bad parameter value; the message starts with the parameter's name."""


def describe(text: str, **kw) -> ParameterDescriptor:
    """Read-only parameter descriptor (parameters are validated once, at start-up)."""
    return ParameterDescriptor(description=text, read_only=True, **kw)


def int_range(lo: int, hi: int) -> Dict:
    """Descriptor keywords for an integer range [lo, hi]."""
    return {'integer_range': [IntegerRange(from_value=lo, to_value=hi, step=1)]}


def float_range(lo: float, hi: float) -> Dict:
    """Descriptor keywords for a floating point range [lo, hi]."""
    return {'floating_point_range': [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]}


def run_node(node_name: str, make_node: Callable[[], Node]) -> int:
    """
    Spin a node until Ctrl-C or shutdown; exit code 2 with the parameter named on bad ones.

    A node with a close() method has it called before destroy_node() (bags are closed there).
    """
    node = None
    code = 0
    try:
        node = make_node()
        rclpy.spin(node)
    except ParameterError as err:
        print(f'[{node_name}] invalid parameter: {err}', file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    except Exception as err:
        # rclpy's own parameter exceptions (wrong type, out of declared range) name the parameter.
        if 'Parameter' in type(err).__name__:
            print(f'[{node_name}] invalid parameter: {err}', file=sys.stderr, flush=True)
            code = 2
        else:
            raise
    finally:
        if node is not None:
            close = getattr(node, 'close', None)
            if callable(close):
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


# rclpy's own `throttle_duration_sec` raised "Requested logging filters cannot be changed between
# calls" on Kilted in a node here, so nodes throttle per key with this instead.
class LogThrottle:
    """Call `log(text)` at most once per `period` seconds (wall clock) for each key."""

    def __init__(self, period: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.period, self.clock = period, clock
        self._last: Dict[str, float] = {}
        self.suppressed: Dict[str, int] = {}

    def __call__(self, log: Callable[[str], None], key: str, text: str) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self.suppressed[key] = self.suppressed.get(key, 0) + 1
            return False
        skipped = self.suppressed.pop(key, 0)
        self._last[key] = now
        log(text + (f' ({skipped} more since the last report)' if skipped else ''))
        return True
