"""``python -m lab.sync [PATH...] [--repair]`` (``make sync``): copy run directories into the
MLflow store, idempotently.

PATH is a run directory, a sweep directory, or any folder holding them (default: ``multirun/``
and ``outputs/`` of the repository). The store is ``--uri``, else ``tracking.uri=...``, else
``$MLFLOW_TRACKING_URI``, else the repository's ``sqlite:///mlruns.db`` (a laptop's runs go to a
team's server with ``--uri http://server:5000``). ``--repair`` also closes this host's runs that
are RUNNING in the store although their process is gone (as ``lost``, after syncing them).
Exit status: 0 done, 1 some directory could not be synced, 2 the store cannot be used.
"""

import argparse
import logging
import sys
from pathlib import Path

from . import track
from .track import sync as track_sync
from .track.store import client as store_client
from .track.uri import is_http

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="run or sweep directories (default: multirun/ "
                        "and outputs/); tracking.uri=URI names the store")
    parser.add_argument("--uri", help="tracking URI of the store to fill")
    parser.add_argument("--repair", action="store_true",
                        help="also close this host's RUNNING runs whose process is gone")
    parser.add_argument("-v", "--verbose", action="store_true", help="show MLflow's log records")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(message)s")
    track.quiet_store_logs(args.verbose)
    track.mask_log_records()
    uri, paths = args.uri, []
    for p in args.paths:
        if p.startswith("tracking.uri="):
            uri = p.split("=", 1)[1]
        else:
            paths.append(p)
    if not paths and not args.repair:
        paths = [str(REPO_ROOT / d) for d in ("multirun", "outputs") if (REPO_ROOT / d).is_dir()]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        print(f"gradlab sync: no such directory: {missing[0]}", file=sys.stderr)
        return 2
    uri = track.resolve_tracking_uri(uri, REPO_ROOT)
    try:
        if is_http(uri):  # MLflow's import outside the server's time to answer
            store_client(uri)
        track.check_reachable(uri)
        report = track_sync.sync(uri, paths) if paths else track_sync.SyncReport()
        if args.repair:
            fixed = track_sync.repair(uri)
            report.closed += fixed.closed
            report.lost += fixed.lost
            report.values += fixed.values
            report.artifacts += fixed.artifacts
            report.runs += fixed.runs
            report.failed += fixed.failed
    except track.TrackingUnreachable as exc:
        print(f"gradlab sync: {exc}", file=sys.stderr)
        return 2
    print(f"gradlab sync into {track.mask_uri(uri)}: {report.line()}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
