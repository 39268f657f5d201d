"""``make demo``: run the two headline studies into the MLflow store and say where to look."""

import subprocess
import sys

from . import track
from .app import REPO_ROOT
from .summary import table_text
from .track import read

STUDIES = ("exploding_identity", "vanishing_sigmoid")


def main(studies=STUDIES):
    for study in studies:
        print(f"\n=== {study}: python -m lab -m +experiment={study}", flush=True)
        done = subprocess.run([sys.executable, "-m", "lab", "-m", f"+experiment={study}"],
                              cwd=REPO_ROOT)
        if done.returncode != 0:
            sys.exit(done.returncode)
    uri = track.resolve_tracking_uri(None, REPO_ROOT)
    client = read.open_store(uri)
    print("\n=== Results (read back from the MLflow store)")
    for study in studies:
        found = read.latest_sweep(client, study)
        if found is None:
            continue
        parent, jobs = found
        print(f"\n{study}  (parent run {parent.info.run_id})\n{table_text(jobs)}")
    print(f"""
Where to look:
  MLflow UI     make ui   ->  http://127.0.0.1:5000  (store: {track.mask_uri(uri)})
                experiments {", ".join(studies)}: open a parent run for the sweep's summary
                table and figure, a child run for its metrics (grad_norm/layer_XX,
                delta_norm/layer_XX, ...) and figures/ under Artifacts.
  Hydra outputs multirun/<study>/<time>/<job>/ (config.yaml, history.npz, summary.json)
  More studies  make sweep EXP=init_comparison   (all: make experiments; list: conf/experiment/)
""")


if __name__ == "__main__":
    main()
