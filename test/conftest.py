"""Suite-wide fixtures. Tests run against the installed package (tools/run_tests.sh)."""
import os
import pathlib
import signal
import socket
import sys

import pytest

TEST_DIR = pathlib.Path(__file__).resolve().parent
REPO_ROOT = TEST_DIR.parent
# Reusable test helpers (test/helpers_*.py) import as plain modules. Only test/ goes on the path:
# the repo root would shadow the installed vlmad_ros (which has the generated messages).
if str(TEST_DIR) not in sys.path:
    sys.path.insert(0, str(TEST_DIR))
# A shell starts background jobs (`make test &`, nohup, some CI runners) with SIGINT ignored,
# and an ignored signal stays ignored across exec: every node and launch process the tests
# start would then ignore the SIGINT the tests stop them with. Catching it here resets it to
# the default in every child (exec resets caught signals, never ignored ones).
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def ros_env():
    """Environment for node subprocesses: this run's ROS_DOMAIN_ID and localhost discovery."""
    env = dict(os.environ)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')   # Jazzy and later
    env.setdefault('ROS_LOCALHOST_ONLY', '1')                      # Humble
    env['PYTHONUNBUFFERED'] = '1'
    return env


@pytest.fixture
def free_port():
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='session')
def repo_root():
    return REPO_ROOT


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread: two spin against each other on a shared 2-core machine."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
