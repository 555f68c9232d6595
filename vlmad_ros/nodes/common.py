"""
What every vlmad_ros node shares: parameter descriptors, the parameter error, QoS names, main().

A bad parameter stops a node at start-up with exit code 2 and a message that names it.
"""
from __future__ import annotations

import sys
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
