"""``python -m lab``: the Hydra app. One run, or with ``-m`` a sweep (one MLflow parent run,
every job its child). Errors a user can cause end with one line and a non-zero exit:
2 for a bad config or unreachable tracking store, 1 for a failed run, 130 for an interrupt."""

import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from . import figure_worker, track
from .app import JobContext, run_job
from .schema import ConfigError, register_configs
from .sweep import experiment_name, mark_job_done, resolved, sweep_line

log = logging.getLogger("lab")
EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 1, 2, 130
_failed_runs = []
# overrides that say where/how to run rather than what: left out of a job's label
_NOT_LABEL = ("+experiment", "experiment=", "tracking.", "hydra", "backend=")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _catch_sigterm():
    try:  # SIGTERM ends a run like Ctrl-C: metrics flushed, run marked interrupted
        signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread (some launchers): keep the default
        pass


def job_label(overrides):
    return ", ".join(o for o in overrides if not o.startswith(_NOT_LABEL))


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def app(cfg: DictConfig):
    _catch_sigterm()
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    name = experiment_name(cfg, hc.runtime.choices)
    ctx = JobContext(output_dir=Path(hc.runtime.output_dir), label=job_label(hc.overrides.task),
                     experiment=name, sweep_dir=Path(hc.sweep.dir) if multirun else None)
    try:
        return run_job(resolved(cfg), ctx)
    except (ConfigError, track.TrackingUnreachable) as exc:
        # SystemExit passes Hydra's job wrapper without its multi-line report
        _say(exc)
        raise SystemExit(EXIT_CONFIG) from None
    except Exception as exc:  # recorded as a failed run; a sweep goes on with the next job
        message = _one_line(exc)
        log.error("run %s failed: %s", ctx.label or name, message)
        _failed_runs.append(message)
        return {"label": ctx.label, "status": "failed", "error": message}
    finally:
        if multirun:
            done, total = mark_job_done(ctx.sweep_dir, hc.job.num)
            log.info(sweep_line(name, done, total))


def _say(exc):
    prefix = "gradlab: config error: " if isinstance(exc, ConfigError) else "gradlab: "
    print(prefix + _one_line(exc), file=sys.stderr, flush=True)


def _one_line(exc):
    text = str(exc).strip() or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip()
                    and not line.strip().startswith(("full_key:", "object_type", "reference_type")))


def _is_config_error(exc):
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException
    return isinstance(exc, (ConfigError, ConfigCompositionException, MissingConfigException,
                            HydraException, OmegaConfBaseException))


def main():
    # Hydra would print its own multi-line report; we let errors through and say one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    register_configs()
    try:
        app()
        figure_worker.wait()
    except KeyboardInterrupt:
        print("gradlab: interrupted; metrics so far were flushed and the run marked "
              "status=interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except track.TrackingUnreachable as exc:
        _say(exc)
        sys.exit(EXIT_CONFIG)
    except Exception as exc:
        if not _is_config_error(exc):
            raise
        print(f"gradlab: config error: {_one_line(exc)}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    if _failed_runs:
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
