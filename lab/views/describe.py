"""What the MLflow UI shows about a run, a sweep and an experiment: pure functions, no MLflow.

What MLflow 3's UI reads (facts from its source and checked in Chromium, MLflow 3.17):

- which side of the UI an experiment opens on: in 3.17 a global switch, *GenAI* (the
  default: an empty traces overview) or *Model training* (the runs), kept per browser and
  settable by the URL parameter ``workflowType=machine_learning``; earlier 3.x releases read
  the experiment tag ``mlflow.experimentKind`` (``custom_model_development``: training runs).
  The lab sets the tag and puts the parameter in every link it prints;
- tag ``mlflow.note.content`` (run or experiment): the description, rendered as Markdown on
  the run's overview page and above the experiment's runs (links work);
- experiment tag ``mlflow.sharedViewState.<key>`` holds a view of the runs page as JSON
  (visible columns, sort order, which runs the charts draw); the URL
  ``#/experiments/<id>/runs?viewStateShareKey=<key>`` opens it. Which runs are expanded is
  not part of a shared view, but a list sorted by anything other than the start time is
  shown flat, so a sweep's parent and all its children are visible at once;
- metric charts are grouped in sections named after the part of the key before ``/``,
  sections sorted by code point (upper case before lower case), every chart on a linear,
  self-scaled y axis, and chart titles cut after ~16 characters.

So per-layer norms also go to the store as base-10 logarithms (``Log10/dW layer 01``...: a
vanishing run at 1e-15 and a diverged one at 1e30 share one readable axis), and once per run
as a depth profile (``Depth/log10 dZ init``..., step = layer l: the chart is the norm against
depth, one line per run in the experiment's chart view); ``Depth`` and ``Log10`` are the
first two sections on a run's "Model metrics" tab.
"""

import math
import re
from pathlib import Path

import numpy as np

# --- experiment ----------------------------------------------------------------------------------

KIND_TAG, KIND_TRAINING = "mlflow.experimentKind", "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"
VIEW_KEY = "gradlab"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
LOG10, PROFILE = "Log10", "Depth"  # section names: upper case sorts first
#: a run's summary numbers (the sweep table's columns) as metrics; short names, because the
#: runs table cuts its column headers after ~12 characters
SUMMARY_METRICS = {"final_loss": "final loss", "final_test_loss": "final test loss",
                   "grad_first_init": "dW1 init", "grad_last_init": "dWL init",
                   "grad_first_end": "dW1 end", "grad_last_end": "dWL end",
                   "delta_ratio_init": "dZ1 over dZL init"}

#: the runs table's columns: what a sweep's rows are compared by
RUN_COLUMNS = ("tags.`status`", "tags.`diverged_at_step`",
               *(f"metrics.`{SUMMARY_METRICS[k]}`" for k in
                 ("final_loss", "grad_first_init", "grad_last_init", "grad_first_end",
                  "grad_last_end")))


def runs_view_state():
    """The runs page's state (a JSON-able dict) stored under ``VIEW_TAG``: the summary columns,
    runs sorted by name (a flat list: the sweep's parent and every child visible), every run
    drawn in the chart view (MLflow's default is the first 10)."""
    return {"selectedColumns": list(RUN_COLUMNS), "orderByKey": "tags.`mlflow.runName`",
            "orderByAsc": True, "runsHiddenMode": "SHOW_ALL", "hideEmptyCharts": True}


def runs_view_url(base_url, experiment_id):
    """Where a user lands on the lab's view of an experiment's runs (``base_url`` "" gives the
    in-app link). ``workflowType=machine_learning`` picks MLflow 3.17's "Model training" side
    (its default is GenAI, remembered per browser); older versions ignore it."""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey="
            f"{VIEW_KEY}&workflowType=machine_learning")


def experiment_tags(name, repo_root=None, experiment_id=None):
    """Tags that make the UI open the experiment on its training runs, the lab's table view,
    and a description: the study's question (for a named study), a link to that view (given
    the experiment's id) and where to click for the per-layer charts."""
    import json

    tags = {KIND_TAG: KIND_TRAINING, VIEW_TAG: json.dumps(runs_view_state())}
    question = study_question(name, repo_root) if repo_root else None
    parts = []
    if experiment_id is not None:  # first: the line MLflow shows while the text is folded
        parts.append(f"**[Open the runs table with the lab's columns]"
                     f"({runs_view_url('', experiment_id)})**: every run of each sweep, its "
                     "status, final loss and first/last layer gradient norms at init and end.")
    if question:
        parts.append(f"**{name}.** {question}")
    tags[DESCRIPTION_TAG] = "\n\n".join(parts + [_WHERE_TO_CLICK])
    return tags


_WHERE_TO_CLICK = (
    "Per-layer charts: click a run's name, then its **Model metrics** tab. The first section, "
    "**Depth**, plots log10 of each layer's norm against the layer (x axis *Step* = layer l; "
    "dW = gradient, dZ = backpropagated error, at init and at the end); **Log10** holds every "
    "layer's norm over training. All runs in one chart: the chart button (second of the three "
    "view buttons left of the search box), same sections, one line per run.")


def study_question(name, repo_root):
    """The **Question.** paragraph of ``experiments/<name>.md``, else the header comment of
    ``conf/experiment/<name>.yaml``, else None."""
    root = Path(repo_root)
    md = root / "experiments" / f"{name}.md"
    if md.is_file():
        m = re.search(r"\*\*Question\.\*\*(.+?)(?:\n\s*\n|$)", md.read_text(), re.S)
        if m:
            return " ".join(m.group(1).split())
    yml = root / "conf" / "experiment" / f"{name}.yaml"
    if yml.is_file():
        lines = [ln[1:].strip() for ln in yml.read_text().splitlines()
                 if ln.startswith("#") and "@package" not in ln and not ln[1:].strip()
                 .startswith("Run:")]
        return " ".join(lines) or None
    return None


# --- which params apply --------------------------------------------------------------------------

DATA_KEYS = ("name", "n_train", "n_test", "normalize")  # every data set's keys


def data_keys(name):
    """The config keys data set ``name`` reads: the common ones and its own options."""
    from ..data import OPTIONS

    return DATA_KEYS + OPTIONS.get(name, ())


def applicable_config(cfg):
    """The config without the keys that do not apply to this run: of ``data`` only the data
    set's own keys, of ``optimizer`` only its own hyper-parameters (the model layer's tables:
    ``lab.data.OPTIONS``, ``lab.optim.HYPER_DEFAULTS``). Unknown names keep every key (the
    run then fails and says why)."""
    from ..optim import HYPER_DEFAULTS

    out = dict(cfg)
    data, opt = cfg.get("data"), cfg.get("optimizer")
    if isinstance(data, dict) and data.get("name") is not None:
        keep = data_keys(data["name"])
        out["data"] = {k: v for k, v in data.items() if k in keep and v is not None}
    if isinstance(opt, dict) and opt.get("name") in HYPER_DEFAULTS:
        keep = ("name", *HYPER_DEFAULTS[opt["name"]])
        out["optimizer"] = {k: v for k, v in opt.items() if k in keep and v is not None}
    return out


# --- a run in words ------------------------------------------------------------------------------

_DATA_WORDS = {"identity": "y = x", "linear": "linear regression", "teacher":
               "a random tanh teacher", "circles": "two circles", "moons": "two moons",
               "spiral": "two spirals", "digits": "8x8 handwritten digits"}


def run_summary_line(cfg):
    """One sentence naming the configuration, e.g. "A 10-layer identity net, 2 units wide,
    identity init with gain 1.5, trained with sgd (lr 0.01) on full batches of y = x for 2000
    steps (mse)."."""
    m, init, opt, data, train = (cfg[k] for k in ("model", "init", "optimizer", "data", "train"))
    hyper = ", ".join(f"{k} {v:g}" for k, v in applicable_config(cfg)["optimizer"].items()
                      if k != "name")
    batch = ("full batches" if train["batch_size"] == "full"
             else f"mini-batches of {train['batch_size']}")
    out = "" if m.get("output_activation", "identity") == "identity" else \
        f" and a {m['output_activation']} output"
    return (f"A {m['depth']}-layer {m['activation']} net{out}, {m['width']} units wide, "
            f"{init['name']} init with gain {init['gain']:g}, trained with {opt['name']} "
            f"({hyper}) on {batch} of {_DATA_WORDS.get(data['name'], data['name'])} "
            f"({data['name']}, {data['n_train']} examples) for {train['steps']} steps "
            f"({train['loss']}).")


def run_description(cfg, label="", experiment=""):
    """Markdown for a run's overview page: its configuration in words, what the sweep varied,
    and where its per-layer charts are."""
    parts = []
    if label:
        parts.append(f"**{label}**" + (f" — a job of the **{experiment}** sweep" if experiment
                                       and experiment != "default" else ""))
    parts.append(run_summary_line(cfg))
    parts.append("Per-layer charts: **Model metrics** tab → section **Depth** (log10 of "
                 "each layer's gradient norm at init and at the end, step = layer) and **Log10** "
                 "(every layer over training). Figures: **Artifacts** → `figures/`.")
    return "\n\n".join(parts)


def run_tags(cfg, label="", experiment=""):
    return {DESCRIPTION_TAG: run_description(cfg, label, experiment)}


# --- metrics that stay readable in MLflow's charts -----------------------------------------------

_LOG_STATS = ("grad_norm/", "delta_norm/")


_SHORT = {"grad_norm": "dW", "delta_norm": "dZ"}  # chart titles are cut after ~16 characters


def _log10_name(key):
    """``grad_norm/layer_01`` -> ``Log10/dW layer 01``; ``grad_norm/total`` -> ``Log10/dW total``."""
    stat, _, rest = key.partition("/")
    return f"{LOG10}/{_SHORT[stat]} {rest.replace('_', ' ')}"


def _log10(values):
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.log10(np.asarray(values, dtype=float))
    v[~np.isfinite(v)] = np.nan  # zero, negative or diverged: not stored (the writer skips NaN)
    return v


def with_log10(metrics):
    """``metrics`` plus ``Log10/dW layer 01``, ``Log10/dZ layer 01``...: log10 of every
    per-layer gradient norm (dW = ``grad_norm``) and error norm (dZ = ``delta_norm``), of
    ``grad_norm/total`` and of the training loss. Same steps as ``metrics``."""
    out = dict(metrics)
    for key, values in metrics.items():
        if key.startswith(_LOG_STATS):
            out[_log10_name(key)] = _log10(values)
    if "loss/train" in metrics:
        out[f"{LOG10}/loss train"] = _log10(metrics["loss/train"])
    return out


def end_of_run_metrics(history, summary):
    """Blocks ``(metrics, steps)`` logged once a run has finished:

    - ``Depth/log10 dW init`` (and ``dW end``, ``dZ init``, ``dZ end``), step = layer
      l = 1..L: MLflow's line chart is then the norm against depth;
    - ``final loss``, ``dW1 init``, ``dWL end`` ... (``SUMMARY_METRICS``: the sweep table's
      columns), at the last step: the runs table shows them as columns."""
    from ..history import depth_of, last_finite_row, layer_series

    depth = depth_of(history)
    layers = np.arange(1, depth + 1)
    end = last_finite_row(history)
    profile = {}
    for stat in ("grad_norm", "delta_norm"):
        for row, when in ((0, "init"), (end, "end")):
            profile[f"{PROFILE}/log10 {_SHORT[stat]} {when}"] = _log10(
                layer_series(history, stat, row))
    scalars = {name: np.array([_number(summary.get(k))]) for k, name in SUMMARY_METRICS.items()
               if _number(summary.get(k)) is not None}
    last_step = np.array([int(history["step"][-1])])
    return [(profile, layers), (scalars, last_step)]


def _number(x):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def is_ui_metric(name):
    """True for the metrics logged only for MLflow's charts and table (``Log10/...``,
    ``Depth/...``, the summary numbers), not the per-step contract of DESIGN.md."""
    return name.startswith((f"{LOG10}/", f"{PROFILE}/")) or name in SUMMARY_METRICS.values()


# --- a sweep -------------------------------------------------------------------------------------

def _label_items(label):
    """"init.gain=1.5, model.depth=2" -> {"init.gain": "1.5", "model.depth": "2"}."""
    items = {}
    for part in (label or "").split(", "):
        key, eq, value = part.partition("=")
        if eq:
            items[key.lstrip("+~")] = value
    return items


def swept_keys(jobs):
    """Override keys whose value differs between the jobs (``init`` for a group sweep)."""
    seen = {}
    for job in jobs:
        for k, v in _label_items(job.get("label")).items():
            seen.setdefault(k, set()).add(v)
    return sorted(k for k, vs in seen.items()
                  if len(vs) > 1 or any(k not in _label_items(j.get("label")) for j in jobs))


def plain_config(config):
    """A job's config as a plain dict without ``hydra`` (from Hydra's DictConfig or a dict)."""
    if hasattr(config, "_get_node"):  # an OmegaConf DictConfig
        from omegaconf import OmegaConf, open_dict

        config = config.copy()
        with open_dict(config):
            config.pop("hydra", None)
        config = OmegaConf.to_container(config, resolve=True)
    return {k: v for k, v in config.items() if k != "hydra"}


def _flat(cfg, prefix=""):
    out = {}
    for key, value in cfg.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(_flat(value, name))
        else:
            out[name] = value
    return out


def fixed_params(config, jobs):
    """The sweep's fixed settings, flat: the applicable config of the sweep without the keys
    the jobs vary (a swept group ``init`` drops every ``init.*``) and without ``tracking.*``
    (where the runs went, not what they are)."""
    swept = swept_keys(jobs) + ["tracking"]
    return {k: v for k, v in _flat(applicable_config(plain_config(config))).items()
            if not any(k == s or k.startswith(s + ".") for s in swept)}


def _cell(x, fmt="{:.3g}"):
    n = _number(x)
    return "–" if n is None else fmt.format(n)


def summary_table(jobs):
    """The sweep's jobs as a Markdown table (launch order)."""
    head = ("| # | configuration | status | final loss | ‖dW[1]‖ init | ‖dW[L]‖ init | "
            "‖dW[1]‖ end | ‖dW[L]‖ end | ‖dZ[1]‖/‖dZ[L]‖ init |")
    rows = [head, "|" + "---|" * 9]
    for i, job in enumerate(jobs, 1):
        status = job.get("status") or ""
        if status == "diverged" and job.get("diverged_at_step") is not None:
            status = f"diverged at step {job['diverged_at_step']}"
        rows.append(f"| {i} | {job.get('label') or '-'} | {status} | "
                    f"{_cell(job.get('final_loss'))} | {_cell(job.get('grad_first_init'))} | "
                    f"{_cell(job.get('grad_last_init'))} | {_cell(job.get('grad_first_end'))} | "
                    f"{_cell(job.get('grad_last_end'))} | {_cell(job.get('delta_ratio_init'))} |")
    return "\n".join(rows)


def sweep_description(name, jobs, question=None, fixed=None):
    """Markdown for the sweep parent's overview page: the study's question, what was varied,
    the summary table, and where to look next."""
    counts = {}
    for job in jobs:
        counts[job.get("status") or "?"] = counts.get(job.get("status") or "?", 0) + 1
    parts = [f"### {name}: {len(jobs)} runs, " + ", ".join(f"{v} {k}" for k, v in counts.items()),
             summary_table(jobs)]
    if question:
        parts.append(f"**Question.** {question}")
    swept = swept_keys(jobs)
    if swept:
        parts.append("**Varied:** " + ", ".join(f"`{k}`" for k in swept)
                     + ("; every other setting is in this run's **Parameters**." if fixed
                        else "."))
    parts.append("Norms are Frobenius norms; *init* = step 0, *end* = the last finite step. "
                 "Figure: **Artifacts** → `figures/sweep_comparison.png`. Metrics `by job/...`: "
                 "one value per job, step = the job's number in the table. Per-layer charts of "
                 "a job: click it in the runs list (this run's children), **Model metrics** "
                 "tab, section **Depth**.")
    return "\n\n".join(parts)


def sweep_metrics(jobs):
    """Metrics of the parent run that compare its jobs, as ``(metrics, steps)`` blocks:
    ``by job/...``, one value per job at step = the job's number (1, 2, ... as in the table), so
    the parent's charts read job by job; and single numbers over the whole sweep (best final
    loss, how many orders of magnitude the first layer's gradient spans across the jobs)."""
    n = len(jobs)
    per_job = {}
    for key, name in (("final_loss", "log10 final loss"), ("grad_first_init", "log10 dW1 init"),
                      ("grad_first_end", "log10 dW1 end"),
                      ("delta_ratio_init", "log10 dZ1 over dZL init")):
        per_job[f"by job/{name}"] = _log10([_number(j.get(key)) or np.nan for j in jobs])
    per_job["by job/diverged"] = np.array([float(j.get("status") == "diverged") for j in jobs])
    overall = {f"jobs_{s}": float(sum(j.get("status") == s for j in jobs))
               for s in ("completed", "diverged", "failed", "interrupted")}
    losses = [_number(j.get("final_loss")) for j in jobs if j.get("status") == "completed"]
    losses = [x for x in losses if x is not None]
    if losses:
        overall["best_final_loss"] = min(losses)
    for key, name in (("grad_first_init", "decades_dW1_init"), ("grad_first_end",
                                                                "decades_dW1_end")):
        v = _log10([_number(j.get(key)) or np.nan for j in jobs])
        if np.isfinite(v).any():  # the spread across jobs, in orders of magnitude
            overall[name] = float(np.nanmax(v) - np.nanmin(v))
    return [(per_job, np.arange(1, n + 1)),
            ({k: np.array([v]) for k, v in overall.items()}, np.array([0]))]


def sweep_record(name, jobs, config, repo_root=None):
    """Everything the parent run shows, as keyword arguments of ``SweepParent.record``:
    params (the fixed settings), tags (the description) and metric blocks. ``config`` is the
    sweep's config (Hydra's, or a plain dict)."""
    question = study_question(name, repo_root) if repo_root else None
    fixed = fixed_params(config, jobs)
    return {"params": fixed,
            "tags": {DESCRIPTION_TAG: sweep_description(name, jobs, question, fixed)},
            "metrics": sweep_metrics(jobs)}


UI_URL = "http://127.0.0.1:5000"  # `make ui`


def where_to_look(experiment_ids, base_url=UI_URL):
    """What ``make demo`` prints last: for each study (name -> experiment id) the link to the
    lab's runs view, then where to click for the per-layer charts."""
    width = max((len(n) for n in experiment_ids), default=0)
    links = "\n".join(f"  {name:<{width}}  {runs_view_url(base_url, eid)}"
                      for name, eid in experiment_ids.items())
    return f"""MLflow UI: `make ui`, then open (each link: a study's runs, flat, with the lab's columns)
{links}
  Per-layer charts: click a run's name -> "Model metrics" tab -> section "Depth" (log10 of each
    layer's gradient norm dW and backpropagated error dZ against the layer: the x axis "Step"
    is the layer; at init and at the end), then "Log10" (every layer over training).
  All runs in one chart: the chart button (second of the three view buttons left of the
    search box) -> section "Depth".
  What a sweep found: click its parent run (named after the study) -> Overview (summary table,
    the study's question); figures/ under "Artifacts".
  Without these links: http://127.0.0.1:5000 -> "Model training" (top left) -> a study."""
