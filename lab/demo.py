"""``make demo``: run the two headline studies into the MLflow store and say where to look."""

import subprocess
import sys

from . import track
from .app import REPO_ROOT
from .track import read
from .views import describe
from .views.sweep import table_text

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
    experiment_ids = {}
    for study in studies:
        found = read.latest_sweep(client, study)
        if found is None:
            continue
        parent, jobs = found
        experiment_ids[study] = parent.info.experiment_id
        print(f"\n{study}  (parent run {parent.info.run_id})\n{table_text(jobs)}")
    print(f"""
Where to look (store: {track.mask_uri(uri)}):
{describe.where_to_look(experiment_ids)}
  Run directories (the record: run.json, rows, history.npz, figures/, summary.json):
    multirun/<study>/<date>_<time>-<pid>/<job>/; `make sync` copies them into the store again.
  More studies: make sweep EXP=init_comparison   (all: make experiments; list: conf/experiment/)
""")


if __name__ == "__main__":
    main()
