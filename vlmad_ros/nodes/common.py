"""
What every vlmad_ros node shares: parameter declaration, QoS names, throttled logging, main().

Every node declares its parameters the same way: a list of `Param` (name, default that fixes
the type, description, range or choices, read-only or live) declared by `declare`, which
builds the ParameterDescriptor (ranges included, so `ros2 param describe` shows them) and
checks type, range and choices itself. A bad parameter stops a node at start-up with exit
code 2 and a message that names it.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import sys
import threading
import time
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

RELIABILITY = {'best_effort': ReliabilityPolicy.BEST_EFFORT,
               'reliable': ReliabilityPolicy.RELIABLE}
# The route command changes rarely: a subscriber that starts late must still get the last one,
# so publisher and subscriber both keep it (transient local, depth 1).
LATCHED_COMMAND = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
# rclpy cannot declare a parameter whose default is infinite from YAML; this stands in.
LARGE = 1e9


class ParameterError(ValueError):
    """A bad parameter value; the message starts with the parameter's name."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One node parameter: the default fixes its type; range/choices are checked at start-up."""

    name: str
    default: object
    description: str
    bounds: Optional[Tuple[float, float]] = None   # inclusive [lo, hi]
    choices: Tuple[str, ...] = ()
    read_only: bool = True                          # False: the node applies changes live

    def descriptor(self) -> ParameterDescriptor:
        text = self.description + (f' (one of: {", ".join(self.choices)})' if self.choices
                                   else '')
        kw = {}
        if self.bounds is not None and isinstance(self.default, bool):
            raise TypeError(f'{self.name}: a bool has no range')
        if self.bounds is not None and isinstance(self.default, int):
            kw['integer_range'] = [IntegerRange(from_value=int(self.bounds[0]),
                                                to_value=int(self.bounds[1]), step=1)]
        elif self.bounds is not None:
            kw['floating_point_range'] = [FloatingPointRange(
                from_value=float(self.bounds[0]), to_value=float(self.bounds[1]), step=0.0)]
        # Floats take integers too (`-p max_accel:=3`); the type is checked in `check`.
        dynamic = isinstance(self.default, float)
        return ParameterDescriptor(description=text, read_only=self.read_only,
                                   dynamic_typing=dynamic, **kw)

    def check(self, value):
        """Return `value` as this parameter's type; ParameterError naming it when wrong."""
        d = self.default
        if isinstance(d, bool):
            ok = isinstance(value, bool)
        elif isinstance(d, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
            ok = ok and not math.isnan(value)
        else:
            ok = isinstance(value, type(d)) and not isinstance(value, bool) or (
                isinstance(d, list) and isinstance(value, (list, tuple)))
        if not ok:
            raise ParameterError(f'{self.name}: must be a {type(d).__name__}, got {value!r}')
        if self.bounds is not None and not self.bounds[0] <= value <= self.bounds[1]:
            raise ParameterError(f'{self.name}: must be in [{self.bounds[0]}, {self.bounds[1]}], '
                                 f'got {value}')
        if self.choices and value not in self.choices:
            raise ParameterError(f'{self.name}: must be one of {list(self.choices)}, got '
                                 f'{value!r}')
        return list(value) if isinstance(d, list) else value


def declare(node: Node, params: Iterable[Param]) -> Dict[str, object]:
    """Declare every parameter with its descriptor; return the checked values by name."""
    values = {}
    for p in params:
        try:
            raw = node.declare_parameter(p.name, p.default, p.descriptor()).value
        except Exception as err:   # rclpy's own type / range errors
            raise ParameterError(f'{p.name}: {err}') from None
        values[p.name] = p.check(raw)
    return values


def params_of(config_cls, descriptions: Mapping[str, str], prefix: str = '',
              ranges: Mapping[str, Tuple[float, float]] = None,
              choices: Mapping[str, Sequence[str]] = None,
              live: Iterable[str] = (), defaults=None,
              exclude: Iterable[str] = ()) -> List[Param]:
    """
    Return Params for the fields of a config dataclass; nested ones get `prefix.`.

    Defaults come from `defaults` (an instance) or the class's own; `exclude` names fields
    the node fixes itself (not parameters).
    """
    ranges, choices, live, exclude = ranges or {}, choices or {}, set(live), set(exclude)
    defaults = config_cls() if defaults is None else defaults
    out = []
    for f in dataclasses.fields(config_cls):
        default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(default) or f.name in exclude:
            continue
        if isinstance(default, tuple):
            default = list(default)
        if isinstance(default, float) and math.isinf(default):
            default = LARGE
        name = prefix + f.name
        out.append(Param(name, default, descriptions.get(name, name), ranges.get(name),
                         tuple(choices.get(name, ())), read_only=name not in live))
    return out


def build(config_cls, values: Mapping[str, object], prefix: str = ''):
    """config_cls(**values of its fields); its ValueError becomes a ParameterError."""
    names = [f.name for f in dataclasses.fields(config_cls)]
    try:
        return config_cls(**{n: values[prefix + n] for n in names if prefix + n in values})
    except ValueError as err:
        raise ParameterError(str(err)) from None


def run_node(node_name: str, make_node: Callable[[], Node], args=None) -> int:
    """
    Init rclpy, spin a node until SIGINT / SIGTERM or shutdown; exit code 2 on a bad parameter.

    The signals are caught here, in Python, and the executor wakes every 0.1 s to see them:
    rclpy's own handler lost a SIGINT now and then on a loaded machine (the process stayed in
    wait_for_ready_callbacks and ros2 launch had to SIGKILL it, losing the bag's end). A node
    with a close() method has it called before destroy_node() (bags are closed there).
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = install_stop_signals()
    node = None
    code = 0
    try:
        node = make_node()
        spin_until(node, stop)
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


def install_stop_signals() -> threading.Event:
    """SIGINT and SIGTERM set the returned event (a second SIGINT raises KeyboardInterrupt)."""
    stop = threading.Event()

    def _on_signal(signum, _frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    return stop


def spin_until(node: Node, stop: threading.Event, period: float = 0.1) -> None:
    """Spin `node` in a single-threaded executor until `stop` is set or rclpy shuts down."""
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=period)
    finally:
        executor.shutdown()


class SpinningNode:
    """
    A node in its own context, spun by a daemon thread: a tool's or test's window on a graph.

    close() stops the thread before it destroys the node: destroying a node while another
    thread spins it can deadlock rclpy over Fast DDS (ros2/rclpy#456), and rclpy's
    Executor.shutdown() returns before its spin thread has left.
    """

    def __init__(self, name: str):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f'{name}-spin', daemon=True)

    def start(self) -> 'SpinningNode':
        self._thread.start()
        return self

    def _spin(self) -> None:
        try:
            while self.context.ok() and not self._stopping.is_set():
                self.executor.spin_once(timeout_sec=0.1)
        except Exception:           # a context shut down mid-wait: the thread is done anyway
            if not self._stopping.is_set():
                raise

    def close(self, timeout: float = 5.0) -> None:
        """Stop spinning, then destroy the node and shut the context down (never blocks long)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.executor.shutdown(timeout_sec=timeout)
            self.node.destroy_node()
        self.context.try_shutdown()


def diagnostic_name(node: Node, task: str) -> str:
    """
    Return '<node>: <task>' for a DiagnosticStatus, the node named with its namespace.

    diagnostic_updater's convention, with the namespace kept ('car1/planner_node: sync'): the
    statuses of several cars share one /diagnostics and must stay apart.
    """
    return f'{node.get_fully_qualified_name().lstrip("/")}: {task}'


def clock_s(node: Node) -> float:
    """Return the node clock [s]: sim time under use_sim_time, so staleness pauses with a sim."""
    return node.get_clock().now().nanoseconds * 1e-9


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
        text += f' ({skipped} more since the last report)' if skipped else ''
        _CALL_SITES.get(getattr(log, '__name__', ''), _CALL_SITES['info'])(log, text)
        return True


# rclpy ties a severity to each call site (function, file, line) of a logger and raises
# "Logger severity cannot be changed between calls" when one site logs at another: LogThrottle
# calls each severity's method from a line of its own (a warning then an error killed
# planner_node's inference thread).
_CALL_SITES: Dict[str, Callable[[Callable[[str], None], str], None]] = {
    'debug': lambda log, text: log(text),
    'info': lambda log, text: log(text),
    'warning': lambda log, text: log(text),
    'warn': lambda log, text: log(text),
    'error': lambda log, text: log(text),
    'fatal': lambda log, text: log(text),
}
