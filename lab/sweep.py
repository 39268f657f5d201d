"""Hydra callback: one MLflow parent run per multirun, a summary when the sweep ends.

Before anything is created, every job's config is composed and checked (``check_jobs``), so a
bad value anywhere in a sweep fails with one line and no run. The parent is created before the
first job (so jobs in joblib/Ray workers find its id in the sweep directory) and closed in
``on_multirun_end``; if the sweep dies first (Ctrl-C, SIGTERM), an ``atexit`` hook still closes
it, as ``interrupted``, together with any child run a killed worker left RUNNING. Each job
leaves its status in the sweep directory, so the launching process can exit non-zero when a
job failed in another process.
"""

import atexit
import copy
import json
import logging
import math
import os
import sys
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from . import signals, track
from .app import REPO_ROOT
from .build import make_data
from .schema import ConfigError, validate
from .track import read, sweep_writer
from .views import describe
from .views.sweep import sweep_comparison, table_csv, table_text
from .worker_death import keep_runs_when_a_worker_dies

log = logging.getLogger("lab")
TOTAL_FILE = ".gradlab_jobs_total"
DONE_DIR = ".gradlab_jobs_done"
EXIT_CONFIG = 2  # exit code for a bad config or an unusable tracking store
JOB_CONFIG_ERROR = "config_error"  # a job's status when its config could not run (no run)
JOB_SKIPPED = "skipped"  # a job that did not start because the sweep was interrupted
STOP_FILE = ".gradlab_interrupted"  # in the sweep dir once a signal stopped the sweep
#: sweeps larger than this skip the up-front check of every job's config (composing one costs
#: ~0.1 s, as much again as Hydra's own check); their jobs are still checked one by one
CHECK_JOBS_MAX = 256
_sweep_dirs = []  # sweeps started by this process: main() reads their jobs' statuses


incomplete_lines = []  # one line per run of this process whose values are not all in the store


def is_config_error(exc):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    return isinstance(exc, (ConfigError, HydraException, OmegaConfBaseException))


def error_line(exc, prefix=None):
    """The one line a user sees for an error: ``gradlab: config error: ...`` for a bad config,
    ``gradlab: ...`` otherwise; passwords in URIs masked."""
    if prefix is None:
        prefix = "gradlab: config error: " if is_config_error(exc) else "gradlab: "
    text = _first_lines(exc)
    cause = exc.__cause__
    # Hydra's "Error merging override model.depth=abc" says why only in its cause
    if cause is not None and type(exc).__name__ == "ConfigCompositionException":
        text += f": {_first_lines(cause)}"
    return prefix + track.mask_uri(text)


def _first_lines(exc):
    text = str(exc).strip() or type(exc).__name__
    text = text.split("\nConfig search path:")[0]  # Hydra's list of search paths: noise here
    return " ".join(line.strip() for line in text.splitlines() if line.strip()
                    and not line.strip().startswith(("full_key:", "object_type", "reference_type")))


def experiment_name(cfg, choices=None):
    return cfg.tracking.experiment or (choices or {}).get("experiment") or "default"


def count_jobs(config):
    """Number of jobs the basic sweeper will launch: product of the sweep lengths."""
    params = config.hydra.sweeper.get("params") or {}
    parser = OverridesParser.create()
    by_key = {}  # a key swept on the command line replaces the study's own sweep of it
    for override in parser.parse_overrides([f"{k}={v}" for k, v in params.items()]
                                           + list(config.hydra.overrides.task)):
        by_key[override.key_or_group] = override
    total = 1
    for override in by_key.values():
        if override.is_sweep_override():
            total *= len(list(override.sweep_string_iterator()))
    return total


def job_overrides(config):
    """Every job's override list, as Hydra's basic sweeper builds them; None for another
    sweeper (its jobs are checked one by one)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra

    if not str(config.hydra.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return None
    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() \
        else None
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(lines)
    return BasicSweeper.split_arguments(parsed, None)[0]


def check_jobs(config):
    """Compose and validate every job of a multirun before any run exists.

    Raises Hydra's composition error or a one-line ConfigError naming the job; the data's
    shapes are checked too (identity init on a non-square net, batch larger than the data).
    """
    from hydra.core.global_hydra import GlobalHydra

    jobs = job_overrides(config)
    if not jobs or len(jobs) > CHECK_JOBS_MAX or not GlobalHydra.instance().is_initialized():
        return False
    loader = GlobalHydra.instance().config_loader()
    shapes, composed = {}, {}
    for num, overrides in enumerate(jobs):
        # Hydra composes each job twice more (its sweeper's check and the launch): compose
        # once per combination of group choices here, and set plain values on a copy
        groups, values = _split_overrides(loader, overrides)
        if groups not in composed:
            base = loader.load_sweep_config(config, list(groups))
            with open_dict(base):
                del base["hydra"]
            composed[groups] = base
        job_cfg = copy.deepcopy(composed[groups])
        label = " ".join(o for o in overrides if not o.startswith(("hydra", "tracking.")))
        for key, value in values:
            try:
                OmegaConf.update(job_cfg, key, value, merge=False)
            except Exception as exc:  # what Hydra would say composing the job
                raise ConfigError(f"sweep job #{num} ({label}): {key}={value}: "
                                  f"{str(exc).splitlines()[0]}") from None
        try:
            cfg = OmegaConf.to_container(job_cfg, resolve=True)
        except Exception:  # an interpolation only the job can resolve: checked when it runs
            continue
        try:
            validate(cfg)
            key = json.dumps([cfg["data"], cfg["seed"]], sort_keys=True, default=str)
            if key not in shapes:
                try:
                    ds = make_data(cfg)
                    shapes[key] = dict(n_x=ds.n_x, n_y=ds.n_y, n_train=ds.X_train.shape[1])
                except ValueError:  # bad data: that job's run will fail and say why
                    shapes[key] = None
            if shapes[key] is not None:
                validate(cfg, **shapes[key])
        except ConfigError as exc:
            raise ConfigError(f"sweep job #{num} ({label}): {exc}") from None
    return True


def skip_hydra_batch_check():
    """Every job was composed and checked by :func:`check_jobs`: the basic sweeper's own check
    (composing every job again, ~0.1-0.3 s each, before launching it composes it once more)
    would only repeat it. This process only (the launcher's), this sweep only."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    def checked(self, batch):
        BasicSweeper.validate_batch_is_legal = original  # once: a later sweep checks again

    original = BasicSweeper.validate_batch_is_legal
    BasicSweeper.validate_batch_is_legal = checked


def _split_overrides(loader, overrides):
    """(overrides that need Hydra's composition, [(key, value) set on a composed copy]): a
    plain ``key=value`` on an existing non-group key is a value; group choices, additions,
    deletions and anything under ``hydra`` are composed."""
    groups, values = [], []
    for override, text in zip(OverridesParser.create(config_loader=loader)
                              .parse_overrides(list(overrides)), overrides):
        key = override.key_or_group
        plain = (override.type.name == "CHANGE" and override.package is None
                 and not override.is_sweep_override() and "/" not in key
                 and not key.startswith("hydra") and not loader.repository.group_exists(key)
                 and isinstance(override.value(), (str, int, float, bool, type(None))))
        if plain:
            values.append((key, override.value()))
        else:
            groups.append(text)
    return tuple(groups), values


def mark_job_done(sweep_dir: Path, job_num: int, status: str = "completed"):
    """Record a finished job and its status; returns (done, total) for the progress line."""
    done_dir = sweep_dir / DONE_DIR
    done_dir.mkdir(parents=True, exist_ok=True)
    (done_dir / str(job_num)).write_text(status)
    total_file = sweep_dir / TOTAL_FILE
    total = int(total_file.read_text()) if total_file.exists() else None
    return len(list(done_dir.iterdir())), total


def launched_here(sweep_dir):
    """True in the process that launched the sweep (its callback ran here), False in a
    joblib/Ray worker."""
    return Path(sweep_dir) in _sweep_dirs


def stop_requested(sweep_dir):
    return (Path(sweep_dir) / STOP_FILE).exists()


def interrupted_sweeps():
    """Sweeps started by this process that a signal stopped."""
    return [d for d in _sweep_dirs if stop_requested(d)]


def sweep_statuses(sweep_dirs=None):
    """{status: number of jobs} over the sweeps this process started (or ``sweep_dirs``)."""
    counts = {}
    for sweep_dir in _sweep_dirs if sweep_dirs is None else sweep_dirs:
        done_dir = Path(sweep_dir) / DONE_DIR
        for f in done_dir.iterdir() if done_dir.is_dir() else ():
            status = f.read_text().strip() or "completed"
            counts[status] = counts.get(status, 0) + 1
    return counts


child_summaries = read.child_summaries  # the store's queries live in lab/track/read.py
latest_sweep = read.latest_sweep


_open_sweeps = []  # callbacks of sweeps not yet closed (an interrupt closes them)


def close_open_sweeps(status="interrupted"):
    """Close the sweeps this process started and has not closed (an interrupt): their
    writers store what the jobs recorded, their parents end as ``status``."""
    for callback in list(_open_sweeps):
        callback._close_if_open(status)


def _basic_launcher(config):
    """Jobs run one after another in this process (Hydra's basic launcher)."""
    return str(config.hydra.launcher.get("_target_", "")).endswith(".BasicLauncher")


class SweepCallback(Callback):
    def __init__(self):
        self.parent = None
        self.writer = None  # the sweep's writer process (basic launcher): it stores the runs
        self.sweep_dir = None

    def on_multirun_start(self, config, **kwargs):
        # Hydra turns a callback's exception into a warning and goes on; a sweep that cannot
        # start properly must stop here instead, with one line, before any run exists.
        try:
            self._start(config)
        except Exception as exc:
            if self.writer is not None and self not in _open_sweeps:  # nothing to store
                self.writer.kill()
                self.writer = None
            print(error_line(exc), file=sys.stderr, flush=True)
            self._close_if_open("failed")
            raise SystemExit(EXIT_CONFIG) from None

    def _start(self, config):
        if config.tracking.enabled:
            uri = track.resolve_tracking_uri(config.tracking.uri, REPO_ROOT)
            track.check_reachable(uri)
        sweep_dir = Path(config.hydra.sweep.dir)
        if config.tracking.enabled and _basic_launcher(config):
            # the writer imports MLflow while the jobs are checked; it creates nothing before
            # the sweep's record exists (killed if a check fails)
            sweep_dir.mkdir(parents=True, exist_ok=True)
            self.writer = sweep_writer.launch(uri, sweep_dir,
                                              direct=config.tracking.get("sqlite_direct", True))
            self.sweep_dir = sweep_dir
        if check_jobs(config):  # a bad job fails the sweep here
            skip_hydra_batch_check()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        _sweep_dirs.append(sweep_dir)
        total = count_jobs(config)
        (sweep_dir / TOTAL_FILE).write_text(str(total))
        if "joblib" in str(config.hydra.launcher.get("_target_", "")).lower():
            # jobs run in worker processes: a signal asks them to save their runs and the
            # sweep to start no new job (a second signal stops at once)
            signals.install_interrupt_handlers("sweep", stop_file=sweep_dir / STOP_FILE)
            # a dead worker: loky would kill the others mid-run; they finish their runs first
            keep_runs_when_a_worker_dies(sweep_dir, sweep_dir / STOP_FILE)
        if not config.tracking.enabled:
            return
        name = experiment_name(config, config.hydra.runtime.choices)
        tags = {"experiment": name, "jobs_total": total, "sweep": "parent"}
        if self.writer is not None:  # jobs record; the writer process stores (no MLflow here)
            track.runs.record_sweep(uri, name, sweep_dir, name, tags)
            _open_sweeps.append(self)
            atexit.register(self._close_if_open, "interrupted")
            log.info("sweep %s: %d jobs into %s", name, total, track.mask_uri(uri))
            return
        from .track.sync import repair_quietly
        repair_quietly(uri)  # runs and sweeps of this host whose process is gone
        self.parent = track.SweepParent.open(uri, name, sweep_dir, run_name=name, tags=tags)
        self.parent.set_experiment_tags(describe.experiment_tags(name, REPO_ROOT,
                                                                 self.parent.experiment_id))
        atexit.register(self._close_if_open, "interrupted")
        log.info("sweep %s: %d jobs, parent run %s in %s", name, total, self.parent.run_id,
                 track.mask_uri(uri))

    def on_multirun_end(self, config, **kwargs):
        if self.writer is not None:
            self._end_followed(config)
            return
        if self.parent is None:
            return
        try:
            jobs = child_summaries(self.parent.client, self.parent.experiment_id,
                                  self.parent.run_id)
            name = experiment_name(config, config.hydra.runtime.choices)
            sweep_dir = Path(config.hydra.sweep.dir)  # the record, then the store
            (sweep_dir / "summary.csv").write_text(table_csv(jobs))
            (sweep_dir / "summary.json").write_text(json.dumps(jobs, indent=1))
            self.parent.log_artifact(sweep_dir / "summary.csv")
            self.parent.log_artifact(sweep_dir / "summary.json")
            if any(j.get("final_loss") is not None for j in jobs):  # not if all were stopped
                fig = sweep_comparison(jobs, f"{name}: gradient norm by layer and final loss")
                (sweep_dir / "figures").mkdir(exist_ok=True)
                fig.savefig(sweep_dir / "figures" / "sweep_comparison.png")
                self.parent.log_artifact(sweep_dir / "figures" / "sweep_comparison.png",
                                         "figures")
            counts = {s: sum(j["status"] == s for j in jobs)
                      for s in ("completed", "diverged", "failed", "interrupted")}
            self.parent.set_tags({f"jobs_{k}": v for k, v in counts.items()})
            found = describe.sweep_record(name, jobs, config, REPO_ROOT)
            self.parent.record(**found)
            self.parent.save_record(found)  # in sweep.json too, for lab.sync
            print(f"\n{name}: {len(jobs)} runs (parent run {self.parent.run_id})\n"
                  + table_text(jobs), flush=True)
        finally:
            stopped = stop_requested(config.hydra.sweep.dir)
            self._close_if_open("interrupted" if stopped else "completed")

    def _end_followed(self, config):
        """The jobs' table from their records, printed now; the writer then stores the rest
        and the parent's findings (figures come later, from the sweep's figure process)."""
        name = experiment_name(config, config.hydra.runtime.choices)
        jobs = track.record.sweep_jobs(self.sweep_dir)
        print(f"\n{name}: {len(jobs)} runs\n" + table_text(jobs), flush=True)
        findings = None
        if jobs:
            findings = track.runs.findings_json(
                describe.sweep_record(name, jobs, config, REPO_ROOT))
        stopped = stop_requested(self.sweep_dir)
        self._close_if_open("interrupted" if stopped else "completed", findings)
        parent = (self.sweep_dir / track.PARENT_ID_FILE)
        if parent.exists():
            log.info("sweep %s: parent run %s", name, parent.read_text().strip())

    def on_job_start(self, config, **kwargs):
        """Mask URI passwords in the files Hydra saved for the job (it saves them just
        before this call) and in the sweep's multirun.yaml."""
        hc = config.hydra
        files = []
        if hc.get("output_subdir"):
            saved = Path(hc.runtime.output_dir) / hc.output_subdir
            files += [saved / n for n in ("config.yaml", "hydra.yaml", "overrides.yaml")]
        if hc.mode == RunMode.MULTIRUN:
            files.append(Path(hc.sweep.dir) / "multirun.yaml")
        for path in files:
            _mask_file(path)

    def _close_if_open(self, status, findings=None):
        if self.writer is not None:
            writer, self.writer = self.writer, None
            _open_sweeps.remove(self)
            said = []

            def waiting(seconds):
                if seconds > 2 and not said:
                    said.append(1)
                    log.info("storing the sweep's last runs (%s)", self.sweep_dir)

            result = sweep_writer.finish(writer, self.sweep_dir, status, findings, waiting)
            if result.get("missing"):
                incomplete_lines.append(f"gradlab: {result['line']}")
        if self.parent is not None:
            parent, self.parent = self.parent, None
            if status == "interrupted":
                _close_orphans(parent)
            parent.close(status)


def _mask_file(path):
    try:
        text = path.read_text()
    except OSError:
        return
    masked = track.mask_uri(text)
    if masked != text:  # atomically: parallel jobs mask the same multirun.yaml
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(masked)
        os.replace(tmp, path)


def _close_orphans(parent):
    """Close the parent's children still RUNNING: those whose process died (a killed worker)
    as ``lost``, with what their records hold; the rest as interrupted (the sweep is over)."""
    from .track.sync import repair_quietly

    repair_quietly(parent.client.tracking_uri)
    try:
        for run in read.child_runs(parent.client, parent.experiment_id, parent.run_id,
                                   running_only=True):
            parent.client.set_tag(run.info.run_id, "status", "interrupted")
            parent.client.set_terminated(run.info.run_id, "KILLED")
            log.warning("run %s (%s) was left running by a killed worker; marked interrupted",
                        run.info.run_id, run.info.run_name)
    except Exception as exc:  # the store is unreachable at exit: nothing more to do
        log.warning("could not close the runs of sweep %s: %s", parent.run_id,
                    track.mask_uri(str(exc).splitlines()[0] if str(exc) else repr(exc)))


def sweep_line(name, done, total):
    if total is None or not math.isfinite(total):
        return f"[{name}] {done} jobs done"
    return f"[{name}] {done}/{total} jobs done"


def resolved(cfg):
    return OmegaConf.to_container(cfg, resolve=True)
