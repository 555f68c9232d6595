"""
Child processes that never outlive the command that started them.

`vlmad demo`, `vlmad bench planner` and `vlmad benchmark` start nodes and workers. Three
ways a parent goes away, one answer each:

- SIGINT (Ctrl-C): Python raises KeyboardInterrupt, the parent's `finally` blocks run and
  `stop` sends SIGINT, then SIGTERM, then SIGKILL to its children (SIGINT first, so nodes
  close their bags and logs);
- SIGTERM, SIGHUP (`kill`, a closed terminal, a CI timeout): `exit_on_signals` turns them
  into the same clean exit (SystemExit), so the same `finally` blocks run;
- SIGKILL or the OOM killer: nothing runs in the parent, so every child is started through
  `python -m vlmad_ros.children PPID -- CMD...`, which asks the kernel for a parent-death
  signal (Linux prctl PR_SET_PDEATHSIG, kept across exec) and then becomes CMD.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Iterable, Iterator, List, Optional, Sequence

PR_SET_PDEATHSIG = 1          # linux/prctl.h
DEATH_SIGNAL = signal.SIGTERM


def wrapped(cmd: Sequence[str]) -> List[str]:
    """Return `cmd` behind the parent-death wrapper (Linux); unchanged elsewhere."""
    if not sys.platform.startswith('linux'):
        return list(cmd)
    return [sys.executable, '-m', 'vlmad_ros.children', str(os.getpid()), '--', *cmd]


def spawn(cmd: Sequence[str], **popen_kwargs) -> subprocess.Popen:
    """Start `cmd` as a child that receives SIGTERM when this process dies."""
    return subprocess.Popen(wrapped(cmd), **popen_kwargs)


def run(cmd: Sequence[str], check: bool = False, timeout: Optional[float] = None,
        **popen_kwargs) -> subprocess.CompletedProcess:
    """subprocess.run for a child that dies with this process; stopped if this one is."""
    proc = spawn(cmd, **popen_kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop([proc])
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, list(cmd), out, err)
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def stop(procs: Iterable[subprocess.Popen], waits=(5.0, 3.0, 2.0)) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to each live child, waiting between steps."""
    procs = list(procs)
    for sig, wait in zip((signal.SIGINT, signal.SIGTERM, signal.SIGKILL), waits):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            return
        for p in alive:
            p.send_signal(sig)
        deadline = time.monotonic() + wait
        for p in alive:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


@contextlib.contextmanager
def exit_on_signals(signals=(signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Within the block, SIGTERM / SIGHUP raise SystemExit(128 + signal): `finally` runs."""
    def _exit(signum, _frame):
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, _exit) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _exec_with_parent_death_signal(argv: Sequence[str]) -> None:
    """`PPID -- CMD...`: arm PR_SET_PDEATHSIG, check the parent still lives, exec CMD."""
    import ctypes
    if len(argv) < 3 or argv[1] != '--':
        raise SystemExit('usage: python -m vlmad_ros.children PARENT_PID -- CMD [ARGS...]')
    parent = int(argv[0])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), 'prctl(PR_SET_PDEATHSIG) failed')
    if os.getppid() != parent:      # the parent died before the signal was armed
        raise SystemExit(128 + int(DEATH_SIGNAL))
    # A parent started in the background (`nohup vlmad demo &`) ignores SIGINT, and an ignored
    # signal survives exec: the child must answer the SIGINT that `stop` sends first.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    cmd = list(argv[2:])
    os.execvp(cmd[0], cmd)


if __name__ == '__main__':
    _exec_with_parent_death_signal(sys.argv[1:])
