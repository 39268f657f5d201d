"""``python -m lab``: the Hydra app. One run, or with ``-m`` a sweep (one MLflow parent run,
every job its child). Errors a user can cause end with one line and a non-zero exit:
2 for a bad config or unreachable tracking store, 1 for a failed run, 130 for an interrupt."""

import contextlib
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from . import config_cache, signals, track, worker_death
from .app import JobContext, run_job
from .schema import ConfigError, register_configs
from .sweep import (
    EXIT_CONFIG,
    JOB_CONFIG_ERROR,
    JOB_SKIPPED,
    STOP_FILE,
    close_open_sweeps,
    error_line,
    experiment_name,
    incomplete_lines,
    interrupted_sweeps,
    is_config_error,
    launched_here,
    mark_job_done,
    resolved,
    stop_requested,
    sweep_line,
    sweep_statuses,
)

log = logging.getLogger("lab")
# `${gradlab_pid:}` in conf/config.yaml's run and sweep dirs: two sweeps started in the same
# second get different directories (and parents). Cached, and Hydra copies the cache into each
# job's config, so every worker of a sweep sees the launcher's value.
OmegaConf.register_new_resolver("gradlab_pid", lambda: str(os.getpid()), use_cache=True,
                                replace=True)
EXIT_FAILED, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 1, 3, 130
WORKER_DIED = ("TerminatedWorkerError", "BrokenProcessPool", "WorkerLostError")
INTERRUPTED_LINE = ("gradlab: interrupted; metrics so far were flushed and the run marked "
                    "status=interrupted")
_failed_runs = []
# overrides that say where/how to run rather than what: left out of a job's label
_NOT_LABEL = ("+experiment", "experiment=", "tracking.", "hydra", "backend=")


def job_label(overrides):
    return ", ".join(o for o in overrides if not o.startswith(_NOT_LABEL))


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def app(cfg: DictConfig):
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    sweep_dir = Path(hc.sweep.dir) if multirun else None
    # SIGINT/SIGTERM end the run like Ctrl-C; in a sweep no job starts after one
    signals.install_interrupt_handlers("raise", stop_file=sweep_dir / STOP_FILE if multirun else None)
    track.mask_log_records()  # also in joblib/Ray workers, which do not run main()
    track.quiet_store_logs(bool(hc.verbose))
    name = experiment_name(cfg, hc.runtime.choices)
    worker = multirun and not launched_here(sweep_dir)  # a joblib/Ray/submitit worker process
    ctx = JobContext(output_dir=Path(hc.runtime.output_dir), label=job_label(hc.overrides.task),
                     experiment=name, sweep_dir=sweep_dir,
                     job_num=hc.job.num if multirun else None, overlap=multirun and not worker)
    status = "interrupted"  # unless the job ends otherwise
    try:
        if multirun and stop_requested(sweep_dir):  # the sweep was interrupted: skip the job
            status = JOB_SKIPPED
            return {"label": ctx.label, "status": JOB_SKIPPED}
        with worker_death.busy(sweep_dir) if worker else contextlib.nullcontext():
            summary = run_job(resolved(cfg), ctx)
        status = summary.get("status", "completed")
        return summary
    except KeyboardInterrupt:  # the run is saved and marked interrupted by now
        if multirun:
            (sweep_dir / STOP_FILE).touch()
        if worker:  # returning lets the launcher finish the sweep without new jobs
            log.warning("run %s interrupted; the sweep starts no new job", ctx.label or name)
            return {"label": ctx.label, "status": "interrupted"}
        raise
    except track.StoreIncomplete as exc:  # trained and recorded; the store lacks some of it
        line = f"gradlab: run {ctx.label or name}: {exc}"
        if worker:  # the launching process only sees the job's status
            print(line, file=sys.stderr, flush=True)
        else:
            incomplete_lines.append(line)
        status = "incomplete"
        return {"label": ctx.label, "status": "incomplete", "error": str(exc)}
    except (ConfigError, track.TrackingUnreachable) as exc:
        print(error_line(exc), file=sys.stderr, flush=True)
        status = JOB_CONFIG_ERROR
        if not multirun:  # SystemExit passes Hydra's job wrapper without its multi-line report
            raise SystemExit(EXIT_CONFIG) from None
        # in a sweep (the sweep checked every job's config before starting) the other jobs go
        # on; the sweep exits with EXIT_CONFIG at the end
        return {"label": ctx.label, "status": "failed", "error": error_line(exc)}
    except Exception as exc:  # recorded as a failed run; a sweep goes on with the next job
        message = error_line(exc, prefix="")
        log.error("run %s failed: %s", ctx.label or name, message)
        _failed_runs.append(message)
        status = "failed"
        return {"label": ctx.label, "status": "failed", "error": message}
    finally:
        if multirun:
            done, total = mark_job_done(ctx.sweep_dir, hc.job.num, status)
            log.info(sweep_line(name, done, total))
        if worker:  # between jobs a worker leaves signals to the launching process
            signals.set_interrupt_mode("idle")


def _verbose():
    """``hydra.verbose=...`` or ``--verbose`` on the command line: show the store's log records."""
    return any(a.startswith("hydra.verbose") or a in ("-v", "--verbose") for a in sys.argv[1:])


def main():
    # Hydra would print its own multi-line report; we let errors through and say one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    if "--verbose" in sys.argv:
        sys.argv.remove("--verbose")
    track.mask_log_records()
    track.quiet_store_logs(_verbose())
    signals.install_interrupt_handlers()
    register_configs()
    config_cache.install()  # a sweep's jobs: each config file parsed once, not per job
    try:
        app()
    except KeyboardInterrupt:
        close_open_sweeps("interrupted")  # a sweep's writer stores what its jobs recorded
        for line in incomplete_lines[:3]:
            print(line, file=sys.stderr)
        print(INTERRUPTED_LINE, file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if type(exc).__name__ in WORKER_DIED:  # joblib/loky: one line, not 50
            print(f"gradlab: a worker process of the sweep died ({track.one_line(exc, 160)}); "
                  "the sweep stopped after its running jobs; the dead worker's run was closed "
                  "as lost with what its directory recorded", file=sys.stderr)
            sys.exit(EXIT_FAILED)
        if not (is_config_error(exc) or isinstance(exc, track.TrackingUnreachable)):
            raise
        print(error_line(exc), file=sys.stderr, flush=True)
        sys.exit(EXIT_CONFIG)
    if interrupted_sweeps():  # jobs in worker processes saved their runs, none started after
        print(INTERRUPTED_LINE, file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    statuses = sweep_statuses()  # a multirun's jobs may have run in other processes
    for line in incomplete_lines[:3]:
        print(line, file=sys.stderr)
    if len(incomplete_lines) > 3:
        print(f"gradlab: ... and {len(incomplete_lines) - 3} more runs; `make sync` completes them "
              "all", file=sys.stderr)
    if statuses.get(JOB_CONFIG_ERROR):
        sys.exit(EXIT_CONFIG)
    if _failed_runs or statuses.get("failed"):
        sys.exit(EXIT_FAILED)
    if incomplete_lines or statuses.get("incomplete"):
        sys.exit(EXIT_INCOMPLETE)


if __name__ == "__main__":
    main()
