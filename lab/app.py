"""One job of the Hydra app: config dict in, a trained, tracked run out.

Hydra stays in ``__main__.py``; this module takes the resolved config as a plain dict so it can
be called from tests and notebooks too. Errors a user can cause become ``ConfigError`` (one
line, no run created) or a ``failed`` run that says why; a diverged run is a result, not an
error.
"""

import json
import logging
import math
import os
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from . import figure_worker, signals, track
from .build import build, make_data
from .history import layer_key
from .progress import RunProgress
from .schema import ConfigError, validate
from .track import sweep_writer
from .track.detail import StorePlan, store_series
from .train import AUTO_LOG_POINTS, activation_ranges, assemble_history, train
from .views import describe
from .views.sweep import job_summary

log = logging.getLogger("lab")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class JobContext:
    output_dir: Path
    label: str = ""  # the job's overrides, e.g. "init.gain=1.5"
    experiment: str = "default"
    sweep_dir: Path | None = None  # set in a multirun: the parent run's id lives there
    job_num: int | None = None  # the job's number in its sweep (orders tables)
    repo_root: Path = REPO_ROOT
    # True only in the process that launched the sweep (basic launcher), which outlives its
    # jobs: there a run may end on a thread while the next job trains. A joblib/Ray/submitit
    # worker may exit or be reused the moment the job returns: its run ends before it returns.
    overlap: bool = False


class ChunkSink:
    """Receives each chunk: appends every step to the run directory's record, sends the store
    its selection (:func:`lab.track.detail.store_series`) through the tracker's background
    writer, keeps the chunks for history.npz (also after an interrupt) and updates the
    progress display."""

    def __init__(self, tracker, record, plan, progress, depth, classifier):
        self.tracker, self.record, self.plan, self.progress = tracker, record, plan, progress
        self.depth, self.classifier = depth, classifier
        self.chunks = []

    def __call__(self, chunk):
        with signals.interrupt_guard():  # a signal waits: the record and history.npz agree
            self.chunks.append(chunk)
            if self.record is not None:
                rows = chunk.metrics(self.depth, self.classifier)
                self.record.append(chunk.steps, rows, chunk.evals)
                if self.tracker is not None and getattr(self.tracker, "stores_chunks", True):
                    evals = {k: (chunk.steps[:1], np.array([v])) for k, v in chunk.evals.items()}
                    diverged = int(chunk.steps[-1]) if chunk.diverged else None
                    self.tracker.log_series(store_series(self.plan, chunk.steps, rows, evals,
                                                         diverged))
        self.progress.update(chunk, self.depth)

    def history(self, act_range):
        return assemble_history(self.chunks, self.depth, self.classifier, act_range)


def log_every_steps(steps, log_every):
    """``tracking.log_every`` as a number of steps (``auto``: about 100 logged points)."""
    return max(1, math.ceil(steps / AUTO_LOG_POINTS)) if log_every == "auto" else int(log_every)


def run_job(cfg, ctx: JobContext):
    """Train one configuration; returns its summary dict (status, losses, gradient norms)."""
    validate(cfg)  # names and ranges first: nothing is created for a bad config
    tracking = cfg["tracking"]
    writer = None
    if tracking["enabled"]:
        uri = track.resolve_tracking_uri(tracking.get("uri") or _sweep_uri(ctx), ctx.repo_root)
        track.check_reachable(uri)
        if ctx.sweep_dir is None:  # one run: its writer imports MLflow while the data is made
            ctx.output_dir.mkdir(parents=True, exist_ok=True)
            writer = sweep_writer.launch(uri, ctx.output_dir, single=True,
                                         direct=tracking.get("sqlite_direct", True))
    try:  # the data's shapes complete the checks (identity init, batch size) before any run
        ds = make_data(cfg)
    except ValueError:  # bad data: raised again inside the run, which records it as failed
        ds = None
    except BaseException:
        _stop(writer)
        raise
    else:
        try:
            validate(cfg, n_x=ds.n_x, n_y=ds.n_y, n_train=ds.X_train.shape[1])
        except BaseException:
            _stop(writer)  # nothing was recorded: nothing to store
            raise
    if not tracking["enabled"]:
        return _train_and_record(cfg, ctx, None, None, ds)
    train_cfg = cfg["train"]
    record = track.RunRecord(ctx.output_dir).start(
        experiment=ctx.experiment, run_name=ctx.label or None, uri=track.mask_uri(uri),
        sweep_dir=str(ctx.sweep_dir.resolve()) if ctx.sweep_dir is not None else None,
        total_steps=train_cfg["steps"],
        log_every=log_every_steps(train_cfg["steps"], tracking["log_every"]),
        detail=tracking.get("detail", "default"))
    params = track.flatten_params(describe.applicable_config(cfg))
    tags = {"backend": cfg["backend"], "experiment": ctx.experiment, "status": "running",
            **describe.run_tags(cfg, ctx.label, ctx.experiment)}
    if _followed(ctx):  # the sweep's writer process stores what the record holds
        with track.RecordedRun(uri, record, params, tags) as recorded:
            return _train_and_record(cfg, ctx, recorded, record, ds)
    if writer is not None:  # one run: its writer process stores the record
        return _single_run(cfg, ctx, writer, uri, record, params, tags, ds)
    # a joblib/Ray/submitit worker (perhaps on another machine, perhaps reused for the next
    # job): the run is stored from this process, through a thread, while the net trains
    # (the sweep's callback tagged the experiment once, when the sweep started)
    parent = track.SweepParent.open(uri, ctx.experiment, ctx.sweep_dir, run_name=ctx.experiment)
    tracker = track.RunTracker(uri, ctx.experiment, run_name=ctx.label or None,
                               params=params, tags=tags, parent_run_id=parent.run_id,
                               record=record)
    tracker.start_in_background()
    with tracker:
        return _train_and_record(cfg, ctx, tracker, record, ds)


def _stop(writer):
    if writer is not None:
        writer.kill()
        writer.wait()


def _single_run(cfg, ctx, writer, uri, record, params, tags, ds):
    """Train with the run's writer process beside (MLflow's import, the run's creation and
    every store write happen there, on the other core); wait for it at the end, so that the
    store holds the whole run when ``python -m lab`` returns (or the one line says why not)."""
    try:
        with track.RecordedRun(uri, record, params, tags) as recorded:
            summary = _train_and_record(cfg, ctx, recorded, record, ds)
    finally:  # also after an interrupt or an error: what was recorded gets stored
        result = sweep_writer.finish(writer, ctx.output_dir, "ended")
    run_id = (track.record.read_run(record.dir) or {}).get("run_id")
    if cfg["tracking"].get("figures", True) and summary["status"] in ("completed", "diverged"):
        # drawn by a detached process from now on: its start does not compete with training
        figure_worker.submit(uri, run_id, ctx.output_dir, cfg, _title(cfg, ctx),
                             background="detached")
    if result.get("missing"):
        raise track.StoreIncomplete(record.dir, None, result.get("reason") or result["line"])
    summary["run_id"] = run_id
    return summary


def _followed(ctx):
    """A job of a sweep whose writer process (started by this process) stores its runs."""
    return ctx.sweep_dir is not None and ctx.overlap and sweep_writer.launched(
        ctx.sweep_dir)


def _sweep_uri(ctx):
    """The store the sweep's launcher chose, for a job whose process lacks the launcher's
    environment (a Ray cluster started on its own): from ``sweep.json``, unless it carried a
    password (then only ``tracking.uri`` or the worker's environment can name it)."""
    if ctx.sweep_dir is None or os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    meta = track.record.read_json(ctx.sweep_dir / track.record.SWEEP_FILE) or {}
    uri = meta.get("uri")
    return uri if uri and "***" not in uri else None


def _train_and_record(cfg, ctx, tracker, record, ds=None):
    started = time.perf_counter()
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    (ctx.output_dir / "config.yaml").write_text(yaml.safe_dump(track.mask_config(cfg),
                                                               sort_keys=False))
    ds, net, optimizer = build(cfg, ds, checked=ds is not None)
    theta_init = net.theta.copy()
    train_cfg, tracking = cfg["train"], cfg["tracking"]
    loss = train_cfg["loss"]
    progress = RunProgress(train_cfg["steps"], ctx.label or ctx.experiment,
                           enabled=tracking.get("progress", True))
    plan = None
    if record is not None:
        plan = StorePlan(record.meta["total_steps"], record.meta["log_every"],
                         record.meta["detail"])
    sink = ChunkSink(tracker, record, plan, progress, net.depth, loss != "mse")
    try:
        result = train(net, optimizer, ds.X_train, ds.Y_train, steps=train_cfg["steps"],
                       batch_size=train_cfg["batch_size"], loss=loss, seed=cfg["seed"],
                       divergence_threshold=train_cfg["divergence_threshold"],
                       log_every=tracking["log_every"], X_test=ds.X_test, Y_test=ds.Y_test,
                       on_chunk=sink)
    except BaseException:
        progress.close("stopped")
        if tracker is not None:
            tracker.log_artifact(ctx.output_dir / "config.yaml")
        if sink.chunks:  # keep what was computed before the interrupt or error
            _save_history(sink.history(activation_ranges(net)), ctx, tracker)
        raise
    progress.close(result.status)
    if tracker is not None:  # the run was created while the net trained
        tracker.log_artifact(ctx.output_dir / "config.yaml")
    history = result.history
    _save_history(history, ctx, tracker)
    params = ctx.output_dir / "params.npz"
    np.savez(params, theta_init=theta_init, theta_final=net.theta, sizes=net.sizes)
    if tracker is not None:
        tracker.log_artifact(params)
    summary = job_summary(history, label=ctx.label, job=ctx.job_num, status=result.status,
                          diverged_at_step=result.diverged_at_step, seconds=result.seconds,
                          run_id=tracker.run_id if tracker else None)
    (ctx.output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    if tracker is not None:
        tracker.log_artifact(ctx.output_dir / "summary.json")
        for metrics, steps in describe.end_of_run_metrics(history, summary):
            tracker.log_series({name: (steps, values) for name, values in metrics.items()})
        if tracking.get("figures", True):
            if _followed(ctx):  # drawn by the sweep's figure process, which finds the run
                figure_worker.queue(tracker.uri, ctx.sweep_dir, ctx.output_dir,
                                    _title(cfg, ctx))
            elif ctx.sweep_dir is not None:  # a launcher's worker: drawn before it returns
                figure_worker.submit(tracker.uri, tracker.run_id, ctx.output_dir, cfg,
                                     _title(cfg, ctx), background=False)
            # (a single run hands them to a detached process once its writer is done)
        tags = {"status": result.status}
        if result.diverged_at_step is not None:
            tags["diverged_at_step"] = result.diverged_at_step
            record.update(diverged_at_step=int(result.diverged_at_step))
        tracker.set_tags(tags)
        tracker.finish(result.status)
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    _report(summary, net.depth)
    return summary


def _save_history(history, ctx, tracker):
    path = ctx.output_dir / "history.npz"
    np.savez(path, **history)  # uncompressed: a few MB at most, and 10x faster to write
    if tracker is not None:
        tracker.log_artifact(path)


def _title(cfg, ctx):
    """One line that fits a figure: the study, the net, and the job's overrides (shortened)."""
    m, init = cfg["model"], cfg["init"]
    net = (f"{m['activation']} depth {m['depth']} width {m['width']}, init {init['name']} "
           f"(gain {init['gain']:g}), {cfg['optimizer']['name']}")
    label = textwrap.shorten(ctx.label, 50, placeholder=" …") if ctx.label else ""
    return f"{ctx.experiment}: {net}" + (f" [{label}]" if label else "")


def _report(summary, depth):
    status = summary["status"]
    if status == "diverged":
        status += f" at step {summary['diverged_at_step']}"
    loss = summary["final_loss"]
    log.info("%s: %s, final loss %s, %s %s, %s %s", summary["label"] or "run", status,
             f"{loss:.4g}" if loss is not None else "nan",
             layer_key("grad_norm", 1, depth), summary["grad_first_end"],
             layer_key("grad_norm", depth, depth), summary["grad_last_end"])


__all__ = ["ConfigError", "JobContext", "build", "run_job"]
