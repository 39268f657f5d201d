"""Regenerate every study's figures and write-up blocks from the store."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt

from .. import track
from ..track import read
from .load import load_study
from .markdown import not_run, run_block, write_blocks
from .studies import NEEDS_WEIGHTS, STUDIES

log = logging.getLogger("lab.report")
REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO_ROOT / "experiments"


def index_block(results):
    lines = []
    for name, (_, question, figure) in STUDIES.items():
        out = results.get(name)
        lines.append(f"### [{name}]({name}.md)\n\n{question}  ")
        if isinstance(out, Exception):
            lines.append(f"_The report failed for this study ({type(out).__name__})._\n")
        elif out is None:
            lines.append(f"{not_run(name)}\n")
        else:
            lines.append(f"_Figure: {out.headline}._\n\n![{name}](figures/{figure})\n")
    return "\n".join(lines)


def report(uri=None, experiments_dir=EXPERIMENTS_DIR, studies=None):
    """Regenerate figures and write-up blocks; returns {study: Output or None}."""
    uri = track.resolve_tracking_uri(uri, REPO_ROOT)
    track.check_reachable(uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = read.open_store(uri)
    experiments_dir = Path(experiments_dir)
    figdir = experiments_dir / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in studies or STUDIES:
        renderer = STUDIES[name][0]
        study = load_study(client, name, weights=name in NEEDS_WEIGHTS)
        md = experiments_dir / f"{name}.md"
        if study is None or not study.jobs:
            print(f"{name}: not run yet (make sweep EXP={name})")
            write_blocks(md, {}, default=not_run(name))
            results[name] = None
            continue
        try:
            out = renderer(study, figdir)
        except Exception as exc:  # one broken study must not hide the others
            log.error("%s: report failed: %s: %s", name, type(exc).__name__, exc)
            plt.close("all")
            results[name] = exc
            continue
        out.blocks["run"] = run_block(study, f"make sweep EXP={name}")
        write_blocks(md, out.blocks)
        results[name] = out
        print(f"{name}: {len(study.jobs)} runs from parent {study.parent_id}; "
              + ", ".join(p.name for p in out.figures))
    if studies is None or set(studies) == set(STUDIES):
        write_blocks(experiments_dir / "README.md", {"index": index_block(results)})
    return results


def failures(results):
    return [name for name, out in results.items() if isinstance(out, Exception)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.report", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else "
                        "sqlite:///<repo>/mlruns.db)")
    parser.add_argument("--experiments-dir", "--out", dest="experiments_dir",
                        default=str(EXPERIMENTS_DIR),
                        help="directory of the write-ups; figures go to its figures/")
    parser.add_argument("--study", action="append", choices=list(STUDIES),
                        help="only this study (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        results = report(args.uri, args.experiments_dir, args.study)
    except track.TrackingUnreachable as exc:
        print(f"gradlab: {exc}", file=sys.stderr)
        return 2
    if failures(results):
        print(f"gradlab: report failed for {', '.join(failures(results))}", file=sys.stderr)
        return 1
    return 0
