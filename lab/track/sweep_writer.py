"""One writer per sweep: a process that copies a sweep's run directories into the store while
the jobs train, on the other core.

The launching process (:func:`launch`) starts it beside a basic-launcher sweep and never
imports MLflow: its jobs write their records (:class:`lab.track.recorded.RecordedRun`). The
writer creates the sweep's parent run, closes runs left RUNNING by dead processes, and polls the
sweep directory: each run is created when its ``run.json`` appears, gets the store's selection
(:mod:`lab.track.detail`) of the rows the record gained since the last look, and is ended with
its artifacts once the record says how it ended. When the sweep is over (:func:`finish` writes
``END_FILE``), it writes the sweep's summary with every run id, the parent's findings, and its
result (``RESULT_FILE``: what the store lacks, in one line). If the launching process dies
first, the writer stores what the records hold and closes the runs and the parent as ``lost``.

A store fault never loses a value: the record holds it, the writer tries again on the next
look (after its retry budget), and what is still missing at the end is reported in one line
with the ``lab.sync`` command that completes it. Run as ``python -m lab.track.sweep_writer
SWEEP_DIR`` with the store's URI in ``$GRADLAB_WRITER_URI`` (kept off the command line).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import record as rec
from .detail import StorePlan, store_series
from .uri import mask_uri, one_line

log = logging.getLogger(__name__)

URI_ENV = "GRADLAB_WRITER_URI"
DIRECT_ENV = "GRADLAB_WRITER_DIRECT"  # "0": MLflow's client even on a SQLite store
END_FILE = ".gradlab_sweep_end"  # {"status", "findings"}: the sweep is over (launcher)
RESULT_FILE = ".gradlab_writer.json"  # {"missing", "line"}: what the store lacks (writer)
LOG_FILE = "store-writer.log"
POLL_S = 0.2  # how often the writer looks at the sweep directory
NICE = 5  # a sweep's writer's niceness (see main)
#: a single run's writer: the training is all the machine does until the run ends, and then
#: the writer has the CPU to itself (the run's process waits for it)
NICE_SINGLE = 19
#: after the sweep ended, how long the writer keeps trying a store that is down before it
#: leaves the rest to `lab.sync`
FINAL_BUDGET_S = float(os.environ.get("GRADLAB_STORE_RETRY_S", "60"))


# --------------------------------------------------------------------- launching process


_launched: set[Path] = set()  # sweeps whose writer this process started


def launched(sweep_dir: Path) -> bool:
    return Path(sweep_dir).resolve() in _launched


def launch(uri: str, sweep_dir: Path, single: bool = False,
           direct: bool = True) -> subprocess.Popen:
    """Start the writer of a sweep (or, ``single``, of the one run in ``sweep_dir``), in its
    own session: a Ctrl-C to the terminal stops the training, not the copy of its record.
    ``direct``: on a SQLite store, write MLflow's tables itself (``tracking.sqlite_direct``)."""
    sweep_dir = Path(sweep_dir)
    (sweep_dir / END_FILE).unlink(missing_ok=True)
    (sweep_dir / RESULT_FILE).unlink(missing_ok=True)
    out = open(sweep_dir / LOG_FILE, "w")
    _launched.add(sweep_dir.resolve())
    try:
        proc = subprocess.Popen([sys.executable, "-m", "lab.track.sweep_writer", str(sweep_dir),
                                 *(["--run"] if single else [])],
                                env={**os.environ, URI_ENV: uri,
                                     DIRECT_ENV: "1" if direct else "0"},
                                stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        lower_priority(NICE_SINGLE if single else NICE, proc.pid)  # (its imports too)
        return proc
    finally:
        out.close()


def finish(proc: subprocess.Popen, sweep_dir: Path, status: str, findings=None,
           on_wait=None) -> dict:
    """Tell the writer the sweep is over and wait for it; returns its result
    (``missing``: values and runs the store lacks, ``line``: what to do about it).
    ``on_wait(seconds)`` is called now and then while waiting (a progress line)."""
    rec.write_json(Path(sweep_dir) / END_FILE, {"status": status, "findings": findings})
    t0 = time.monotonic()
    while proc.poll() is None:
        time.sleep(0.05)
        if on_wait is not None:
            on_wait(time.monotonic() - t0)
    result = rec.read_json(Path(sweep_dir) / RESULT_FILE)
    if result is None:
        result = {"missing": -1, "line": f"the sweep's store writer stopped (exit "
                  f"{proc.returncode}; {Path(sweep_dir) / LOG_FILE}); run "
                  f"`python -m lab.sync {sweep_dir}` to copy the sweep into the store"}
    return result


# --------------------------------------------------------------------- the writer


class RunFeed:
    """One run directory, copied into the store as it grows."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.run_id: str | None = None
        self.rows_done = 0  # rows of rows.f64 whose selection is in the store
        self.evals_done = 0  # lines of evals.jsonl in the store
        self.ended = self.end_logged = self.uploaded = False
        # the timestamp of values being written: the same again if the write is retried on
        # the next look (a value is a row of the store's key; a new timestamp would double it)
        self.ts: int | None = None

    def stamp(self) -> int:
        if self.ts is None:
            self.ts = int(time.time() * 1000)
        return self.ts


class SweepWriter:
    def __init__(self, uri: str, sweep_dir: Path, single: bool = False) -> None:
        from .sinks import open_sink

        self.uri, self.sweep_dir = uri, Path(sweep_dir).resolve()
        self.single = single  # ``sweep_dir`` is one run's directory: no parent run
        # a SQLite store's tables directly, or MLflow's client
        self.sink = open_sink(uri, direct=os.environ.get(DIRECT_ENV, "1") != "0")
        log.info("store %s: %s", mask_uri(uri), self.sink.how)
        self.feeds: dict[Path, RunFeed] = {}
        self.trouble: str | None = None  # the last store fault
        self.down_until = 0.0  # after a fault, the store is left alone until then
        self.parent_id: str | None = None
        self.sweep_meta = rec.read_json(self.sweep_dir / rec.SWEEP_FILE) or {}

    # -- the loop
    def run(self) -> dict:
        self.sink.repair(self.uri)  # runs and sweeps of this host whose process is gone
        launcher = os.getppid()  # the process that trains: when it is gone, so is its run
        end = None
        while not self.single and not self.sweep_meta:  # started before the sweep's checks
            end = rec.read_json(self.sweep_dir / END_FILE)
            if end is not None or os.getppid() != launcher:
                return {"missing": 0, "line": ""}  # the sweep never started
            time.sleep(POLL_S / 4)
            self.sweep_meta = rec.read_json(self.sweep_dir / rec.SWEEP_FILE) or {}
        while True:
            end = end or rec.read_json(self.sweep_dir / END_FILE)
            over = end is not None or os.getppid() != launcher
            self.look(final=over)
            if over and (all(f.ended for f in self.feeds.values()) or self._given_up()):
                break
            time.sleep(POLL_S)
        if not self.single:
            status = end["status"] if end else "lost"
            self.end_sweep(status, (end or {}).get("findings"))
        return self.result()

    def look(self, final: bool = False) -> None:
        """One pass over the sweep directory: the parent, then each run not yet ended."""
        from .sinks import ClientSink, NeedsMlflow

        if time.monotonic() < self.down_until:
            return
        if self.trouble is not None and self._still_locked():
            return  # MLflow's own sessions would wait 20 s for the lock at every call
        try:
            if self.parent_id is None and not self.single:
                self.open_parent()
            for run_dir in rec.find_run_dirs([self.sweep_dir]):
                feed = self.feeds.setdefault(run_dir, RunFeed(run_dir))
                if not feed.ended:
                    self.copy(feed, final)
        except NeedsMlflow as e:  # (each step is done once: the client takes up the rest)
            log.info("MLflow's client from here on: %s", e)
            self.sink.shut()
            self.sink = ClientSink(self.uri)
            self.look(final)
        except Exception as e:  # the record keeps everything: try again after a pause
            self._fault(e)
        else:
            self.trouble = self.first_fault = None

    def _fault(self, e: BaseException) -> None:
        from .store import is_transient

        self.trouble = one_line(e, 200)
        log.warning("store fault (%s): %s", "will retry" if is_transient(e) else "permanent",
                    mask_uri(self.trouble))
        if self.first_fault is None:
            self.first_fault = time.monotonic()
        self.down_until = time.monotonic() + 2.0

    first_fault: float | None = None

    def _still_locked(self) -> bool:
        """After a fault on a SQLite store: is it still locked by another process (a quick
        probe, instead of MLflow's 20-s wait)?"""
        from .store import _sqlite_fault
        from .uri import sqlite_path

        path = sqlite_path(self.uri)
        fault = _sqlite_fault(self.uri, path, 0.2) if path is not None else None
        if fault is not None and "locked" in fault:
            self.down_until = time.monotonic() + 1.0
            return True
        return False

    def _given_up(self) -> bool:
        """The sweep is over and the store has been failing for longer than the budget."""
        return (self.trouble is not None and self.first_fault is not None
                and time.monotonic() - self.first_fault > FINAL_BUDGET_S)

    # -- the parent
    def open_parent(self) -> None:
        from .runs import PARENT_ID_FILE, SweepParent

        meta = self.sweep_meta
        exp_id = self.sink.experiment(meta["experiment"])
        self.parent_id = self.sink.find(exp_id, meta) or self.sink.create(
            exp_id, meta, {k: v for k, v in meta.get("tags", {}).items()
                           if k != "mlflow.parentRunId"}, None)
        SweepParent._write_id(self.sweep_dir / PARENT_ID_FILE, self.parent_id)
        self.sweep_meta = {**(rec.read_json(self.sweep_dir / rec.SWEEP_FILE) or {}),
                           "run_id": self.parent_id, "writer": rec.identity()}
        rec.write_json(self.sweep_dir / rec.SWEEP_FILE, self.sweep_meta)
        log.info("parent run %s", self.parent_id)

    def end_sweep(self, status: str, findings) -> None:
        """The sweep's summary (with the run ids), the parent's findings, its end."""
        from ..views.sweep import table_csv
        from .params import flatten_params

        jobs = rec.sweep_jobs(self.sweep_dir)
        (self.sweep_dir / "summary.csv").write_text(table_csv(jobs))
        (self.sweep_dir / "summary.json").write_text(json.dumps(jobs, indent=1))
        meta = {**self.sweep_meta, "status": status, "ended": time.time()}
        tags = dict(meta.get("tags", {}))
        if findings:
            tags.update(findings.get("tags") or {})
            meta["findings"] = {"params": flatten_params(findings.get("params") or {}),
                                "metrics": findings.get("metrics") or []}
        counts = {f"jobs_{s}": sum(j["status"] == s for j in jobs)
                  for s in ("completed", "diverged", "failed", "interrupted")}
        meta["tags"] = {**tags, **{k: str(v) for k, v in counts.items()}}
        rec.write_json(self.sweep_dir / rec.SWEEP_FILE, meta)
        self.sweep_meta = meta
        if self._given_up():
            return
        try:
            self.store_parent(status)
        except Exception as e:  # (a direct path's NeedsMlflow too: `lab.sync` completes it)
            self._fault(e)

    def store_parent(self, status: str) -> None:
        """The parent's findings (params, job-comparing metrics), files and end."""
        from .sync import SWEEP_ARTIFACTS, block_rows

        if self.parent_id is None:
            self.open_parent()
        meta, run_id = self.sweep_meta, self.parent_id
        findings = meta.get("findings")
        if findings:
            self.sink.add_params(run_id, findings.get("params", {}))
            self.log_rows(run_id, block_rows(findings["metrics"],
                                             int(meta.get("started", time.time()) * 1000)))
        files = ([self.sweep_dir / n for n in SWEEP_ARTIFACTS]
                 + sorted(self.sweep_dir.glob("figures/*.png")))
        self.sink.upload(run_id, self.sweep_dir, files)
        self.sink.close(run_id, status, meta)
        log.info("parent run %s stored, %s", run_id, status)

    # -- a run
    def copy(self, feed: RunFeed, final: bool) -> None:
        meta = rec.read_json(feed.dir / rec.RUN_FILE)
        if meta is None or not meta.get("experiment") or not meta.get("tags"):
            feed.ended = final  # not (yet) a run: its job stopped before it could be one
            return
        if feed.run_id is None:
            feed.run_id = self.create(feed, meta)
        status = meta.get("status", "running")
        if status == "running" and final:
            status = "lost"  # the sweep is over (or its process died) and this run never ended
        ended = status != "running"
        self.add_rows(feed, meta, ended)
        if not ended:
            return
        if status == "lost" and not (feed.dir / "history.npz").exists():
            np.savez(feed.dir / "history.npz", **rec.history_from_record(feed.dir, meta))
        if not feed.end_logged:
            self.add_end_of_run(feed)
            feed.end_logged = True
        if not feed.uploaded:
            self.upload(feed)
            feed.uploaded = True
        self.sink.close(feed.run_id, status, meta)
        feed.ended = True
        log.info("run %s (%s) stored, %s", feed.run_id, feed.dir.name, status)

    def create(self, feed: RunFeed, meta: dict) -> str:
        exp_id = self.sink.experiment(meta["experiment"])
        run_id = None
        if (feed.dir / rec.STORE_FILE).exists():  # stored before (a writer started again)
            run_id = self.sink.find(exp_id, rec.read_run(feed.dir))
        if run_id is None:
            tags = {k: v for k, v in meta.get("tags", {}).items() if k != "mlflow.parentRunId"}
            if self.parent_id:
                tags["mlflow.parentRunId"] = self.parent_id
            run_id = self.sink.create(exp_id, meta, tags, meta.get("params", {}))
        rec.write_json(feed.dir / rec.STORE_FILE, {"run_id": run_id, "uri": mask_uri(self.uri)})
        return run_id

    def add_rows(self, feed: RunFeed, meta: dict, ended: bool) -> None:
        """The store's selection of the rows and evaluations recorded since the last look.
        While the run goes on, its last row waits: whether a row is kept can depend on how
        the run ends (the step it diverged at is always kept)."""
        columns = meta.get("columns") or []
        path = feed.dir / rec.ROWS_FILE
        series, n = {}, 0
        if columns and path.exists():
            width = len(columns)
            raw = np.fromfile(path, dtype=np.float64, offset=feed.rows_done * width * 8)
            n = raw.size // width - (0 if ended else 1)
            if n > 0:
                table = raw[: n * width].reshape(n, width)
                plan = StorePlan(meta["total_steps"], meta["log_every"],
                                 meta.get("detail", "default"))
                rows = {c: table[:, j] for j, c in enumerate(columns) if j}
                series = store_series(plan, table[:, 0].astype(np.int64), rows, None,
                                      meta.get("diverged_at_step") if ended else None)
        lines = rec.whole_lines(feed.dir / rec.EVALS_FILE)
        evals = {}
        for line in lines[feed.evals_done:]:
            row = json.loads(line)
            step = row.pop("step")
            for k, v in row.items():
                s, vals = evals.setdefault(k, ([], []))
                s.append(step)
                vals.append(v)
        series.update({k: (np.array(s), np.array(v, dtype=float)) for k, (s, v) in evals.items()})
        if series:
            self.log_series(feed.run_id, series, feed.stamp())
            feed.ts = None
        feed.rows_done += max(n, 0)
        feed.evals_done = len(lines)

    def add_end_of_run(self, feed: RunFeed) -> None:
        from ..history import load
        from ..views.describe import end_of_run_metrics
        from .sync import block_rows

        history, summary = feed.dir / "history.npz", rec.read_json(feed.dir / "summary.json")
        if not history.exists() or summary is None:
            return
        if summary.get("run_id") != feed.run_id:  # the job could not know it
            summary["run_id"] = feed.run_id
            (feed.dir / "summary.json").write_text(json.dumps(summary, indent=1))
        self.log_rows(feed.run_id, block_rows(end_of_run_metrics(load(history), summary),
                                              feed.stamp()))

    def log_series(self, run_id: str, series, ts: int) -> None:
        self.log_rows(run_id, [(name, v, ts, s) for name, (steps, values) in series.items()
                               for s, v in zip(np.asarray(steps).tolist(),
                                               np.asarray(values).tolist())
                               if v is not None and np.isfinite(v)])

    def log_rows(self, run_id: str, rows) -> None:
        """Metric rows ``(name, value, timestamp_ms, step)`` (finite) into the store."""
        if rows:
            self.sink.log(run_id, rows)

    def upload(self, feed: RunFeed) -> None:
        from .sync import RUN_ARTIFACTS

        self.sink.upload(feed.run_id, feed.dir, [feed.dir / n for n in RUN_ARTIFACTS])

    # -- the result
    def result(self) -> dict:
        """``missing``: runs not (all) in the store, -1 for the parent only; ``reason``; a
        sweep's ``line``."""
        left = [d for d in rec.find_run_dirs([self.sweep_dir])  # also those never looked at
                if not (d in self.feeds and self.feeds[d].ended)]
        if not left and not self._given_up() and self.trouble is None:
            return {"missing": 0, "line": ""}
        where = self.sweep_dir
        why = self.trouble or "store down"
        what = ("the run is" if self.single else f"{len(left)} of the sweep's runs are"
                if left else "the sweep's parent run is")
        return {"missing": len(left) or -1, "reason": why,
                "line": f"{what} not all in the store ({why}); the directories have "
                        f"everything: run `python -m lab.sync {where}` (or `make sync`) when "
                        "the store is back"}


def lower_priority(niceness: int, pid: int = 0) -> None:
    """At least ``niceness`` for process ``pid`` (0: this one); never raises priority."""
    try:
        if os.getpriority(os.PRIO_PROCESS, pid) < niceness:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except (AttributeError, OSError):  # (another platform, or the process is gone)
        pass


def main(argv=None) -> int:
    from .store import quiet_store_logs

    args = list(argv or sys.argv[1:])
    single = "--run" in args  # one run's directory, not a sweep's
    sweep_dir = Path([a for a in args if a != "--run"][0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    quiet_store_logs()
    # below the training (whose record holds everything meanwhile), above the figures: on a
    # machine the training keeps busy, the writer takes what it leaves and catches up at the end
    lower_priority(NICE_SINGLE if single else NICE)
    writer = None
    try:
        writer = SweepWriter(os.environ[URI_ENV], sweep_dir, single=single)
        result = writer.run()
    except BaseException as e:  # the record has everything; the launcher says so
        result = {"missing": -1, "reason": f"the store writer failed: {one_line(e, 200)}",
                  "line": f"the sweep's store writer failed ({one_line(e, 200)}); run "
                          f"`python -m lab.sync {sweep_dir}`"}
        log.exception("writer failed")
    finally:
        if writer is not None:
            writer.sink.shut()
    rec.write_json(sweep_dir / RESULT_FILE, result)
    log.info("done: %s", result)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # everything is written; the interpreter's teardown with MLflow loaded costs ~1 s
