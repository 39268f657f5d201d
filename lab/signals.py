"""SIGINT/SIGTERM for the app: a run ends like on Ctrl-C (metrics flushed, run marked
``interrupted``), a parallel sweep tells its workers and starts no new job.

Public: ``install_interrupt_handlers(mode, stop_file)``, ``set_interrupt_mode(mode)``,
``interrupt_guard()``. Lives outside ``lab/track/``: the store knows nothing of signals.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

#: seconds after a first signal in which another one is the same stop arriving twice (Ctrl-C
#: reaches every process of the terminal's group, and a sweep also forwards it to its workers)
SAME_STOP_S = 2.0
_interrupt: dict[str, Any] = {"signals": 0, "guard": 0, "pending": None, "first_at": 0.0,
                              "mode": "raise", "stop_file": None}


def _on_signal(signum: int, frame: Any) -> None:
    state = _interrupt
    name = signal.Signals(signum).name
    now = time.monotonic()
    if state["signals"] and now - state["first_at"] < SAME_STOP_S:
        return
    state["signals"] += 1
    if state["signals"] == 1:
        state["first_at"] = now
        if state["stop_file"] is not None:  # no new job of the sweep starts
            _touch(state["stop_file"])
    if state["mode"] == "idle":  # a launcher's worker between jobs
        return
    if state["mode"] == "sweep":  # the launching process of a parallel sweep
        if state["signals"] == 1:
            n = _signal_workers(signal.SIGTERM)
            print(f"gradlab: stopping the sweep: {n} running jobs save their runs and no new "
                  "job starts; signal again to stop at once", file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt(f"signal {name}")
    if state["signals"] == 1:
        if state["guard"]:  # inside interrupt_guard(): raised when it ends
            state["pending"] = name
            return
        raise KeyboardInterrupt(f"signal {name}")
    if state["signals"] == 2:  # e.g. a second Ctrl-C while the run's metrics are flushed
        print("gradlab: still saving the interrupted run; signal once more to quit without "
              "waiting", file=sys.stderr, flush=True)
        return
    os._exit(130)


def _touch(path: Path) -> None:
    try:
        Path(path).touch()
    except OSError:
        pass


def _signal_workers(signum: int) -> int:
    """Send ``signum`` to this process's joblib (loky) workers; returns how many."""
    me, n = str(os.getpid()), 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]
            if ppid == me and b"popen_loky" in proc.joinpath("cmdline").read_bytes():
                os.kill(int(proc.name), signum)
                n += 1
        except (OSError, IndexError, ValueError):  # gone meanwhile, or no /proc
            continue
    return n


def install_interrupt_handlers(mode: str = "raise", stop_file: Path | None = None) -> None:
    """Route SIGINT and SIGTERM through one handler; reset its state.

    ``mode="raise"`` (a job runs in this process): KeyboardInterrupt in the main thread, so
    the run ends like on Ctrl-C, metrics flushed and run marked ``interrupted``; inside
    :func:`interrupt_guard` it waits for the block to end; a second signal is ignored (the
    flush goes on), a third exits at once. ``mode="sweep"`` (the launching process of a
    parallel sweep): the workers are told (SIGTERM) and the sweep ends once they have saved
    their runs; a second signal raises KeyboardInterrupt at once. ``mode="idle"``: ignored.
    ``stop_file`` is created on the first signal: a sweep starts no job once it exists.
    A signal repeated within ``SAME_STOP_S`` counts once. No-op off the main thread.
    """
    if mode not in ("raise", "sweep", "idle"):
        raise ValueError(f"unknown interrupt mode {mode!r}")
    _interrupt.update(signals=0, guard=0, pending=None, first_at=0.0, mode=mode,
                      stop_file=stop_file)
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, _on_signal)
        except ValueError:  # not the main thread (some launchers): keep the default
            return


def set_interrupt_mode(mode: str) -> None:
    """Change the mode (see :func:`install_interrupt_handlers`) keeping the signals seen."""
    if mode not in ("raise", "sweep", "idle"):
        raise ValueError(f"unknown interrupt mode {mode!r}")
    _interrupt["mode"] = mode


@contextlib.contextmanager
def interrupt_guard():
    """A block an interrupt must not split (e.g. keep a chunk's rows and the saved history in
    step); with :func:`install_interrupt_handlers` a signal inside it is raised at its end."""
    state = _interrupt
    state["guard"] += 1
    try:
        yield
    finally:
        state["guard"] -= 1
        if not state["guard"] and state["pending"]:
            name, state["pending"] = state["pending"], None
            raise KeyboardInterrupt(f"signal {name}")

