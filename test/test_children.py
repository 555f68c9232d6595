"""
No orphans: children of `vlmad` commands end with their parent (vlmad_ros/children.py).

Real processes throughout: a parent killed with SIGKILL (nothing runs in it), and `vlmad demo`
with its three DDS nodes stopped by SIGTERM, SIGINT and SIGKILL.
"""
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest


def _alive(pid: int) -> bool:
    """Tell whether a process exists and is not a zombie waiting to be reaped."""
    try:
        state = pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != 'Z'


def _children_of(pid: int):
    out = []
    for stat in pathlib.Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _wait_gone(pids, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


PARENT = textwrap.dedent("""
    import subprocess, sys, time
    from vlmad_ros import children
    cmd = ['sleep', '300']
    child = children.spawn(cmd) if sys.argv[1] == 'wrapped' else subprocess.Popen(cmd)
    print(child.pid, flush=True)
    time.sleep(300)
""")


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux')
@pytest.mark.parametrize('mode', ['wrapped', 'plain'])
def test_a_killed_parent_takes_its_children_along(mode):
    """SIGKILL leaves the parent no chance to clean up: the kernel's parent-death signal does."""
    parent = subprocess.Popen([sys.executable, '-c', PARENT, mode], stdout=subprocess.PIPE,
                              text=True)
    child = int(parent.stdout.readline())
    try:
        time.sleep(0.5)                      # the wrapper has exec'd `sleep`
        assert _alive(child)
        assert pathlib.Path(f'/proc/{child}/comm').read_text().strip() == 'sleep'
        parent.kill()
        parent.wait(10)
        left = _wait_gone([child], 5.0)
        if mode == 'wrapped':
            assert left == [], 'the wrapped child outlived its SIGKILLed parent'
        else:                                # the control: what happens without the wrapper
            assert left == [child]
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=['SIGTERM', 'SIGINT', 'SIGKILL'])
def test_stopping_vlmad_demo_stops_its_nodes(sig, ros_env, tmp_path):
    """The issue's reproduction: `kill -TERM` of `vlmad demo --short` left two nodes behind."""
    # A 120 s episode: the signal always lands mid-episode, however slow the machine.
    demo = subprocess.Popen([sys.executable, '-m', 'vlmad_ros.cli', 'demo', '--short',
                             '--duration', '120', '--no-video', '--out', str(tmp_path / 'demo')],
                            env=ros_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes = []
    try:
        deadline = time.monotonic() + 60
        while len(nodes) < 3 and time.monotonic() < deadline and demo.poll() is None:
            nodes = _children_of(demo.pid)
            time.sleep(0.2)
        assert len(nodes) == 3, f'demo started {nodes}'
        time.sleep(3.0)                       # the nodes are up (imports done), mid-episode
        assert all(_alive(p) for p in nodes)
        demo.send_signal(sig)
        demo.wait(60)                         # children.stop takes at most 10 s
        assert _wait_gone(nodes, 15.0) == [], f'orphans after {sig.name}'
        if sig != signal.SIGKILL:
            assert demo.returncode != 0       # interrupted, and says so
    finally:
        if demo.poll() is None:
            demo.kill()
        for p in nodes:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
