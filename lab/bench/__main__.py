"""``python -m lab.bench [--quick] [--out DIR] [--peers torch,jax] [--only-load]``: see the
package docstring (``lab/bench/__init__.py``)."""

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from . import __doc__ as PACKAGE_DOC
from .coldstart import process_start
from .gpu import prediction
from .load import loaded_ratios
from .report import (
    load_table,
    machine_info,
    machine_line,
    other_lines,
    plot,
    step_table,
    write_markdown,
)
from .runners import available_peers
from .shapes import ACTIVATION, DTYPES, QUICK_SHAPES, SHAPES, flops_per_step, shape_name
from .timing import gemm_efficiency, measure_shape


def run(out_dir, quick=False, log=print, backends=None, only_load=False, only_shapes=None):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    peers, notes = available_peers()
    if backends is not None:
        notes += [f"{k} installed, left out (--peers)" for k in peers if k not in backends]
        peers = {k: v for k, v in peers.items() if k in backends}
    shapes = QUICK_SHAPES if quick else SHAPES
    if only_shapes is not None:
        shapes = [s for s in SHAPES if s in only_shapes]
    rounds, seconds_per_round = (3, 0.04) if quick else (7, 0.3)
    results = []
    if only_load:
        shapes = []
    log(f"training steps ({', '.join(['numpy', 'numba', *peers])}); "
        f"{'quick' if quick else 'full'} run, {rounds} rounds")
    for shape in shapes:
        for dtype in DTYPES:
            per = measure_shape(shape, dtype, peers, rounds, seconds_per_round, log)
            for backend, rec in per.items():
                results.append({"name": "train_step", "backend": backend, "dtype": dtype,
                                "depth": shape[0], "width": shape[1], "batch": shape[2],
                                "activation": ACTIVATION, **rec})
            if shape == (10, 512, 1024):  # right away, under the same load
                results += gemm_efficiency(per["numba"], dtype, rounds, log)
    for shape in shapes:  # the written prediction for a first GPU run (lab/bench/gpu.py)
        for dtype in DTYPES:
            results.append({"name": "gpu_prediction", "backend": "cuda", "dtype": dtype,
                            "depth": shape[0], "width": shape[1], "batch": shape[2],
                            **prediction(*shape, dtype, flops_per_step(*shape))})
    if {"torch", "jax"} & set(peers):
        log("load tolerance: numba's ratios with one core busy (a background process)")
        results += loaded_ratios(peers, ("float64",) if quick else DTYPES, rounds,
                                 seconds_per_round, log)
    else:
        notes.append("no peer installed: load tolerance (ratios to torch/jax) skipped")
    with tempfile.TemporaryDirectory(prefix="gradlab-bench-") as tmp:
        if only_load:
            starts = {}
        elif quick:
            notes.append("--quick: no cold start (compiling takes longer than the whole quick "
                         "run); warm start uses the package's numba cache")
            starts = {"warm (package cache)": None}
        else:
            cache = Path(tmp) / "numba-cache"
            starts = {"cold (empty numba cache)": cache, "warm (numba cache populated)": cache}
        for variant, cache in starts.items():
            rec = process_start(cache)
            results.append({"name": "process_start", "backend": "numba", "variant": variant,
                            "dtype": "float64", "depth": 10, "width": 2, "batch": 64,
                            "seconds": rec["process_s"], **rec})
            log(f"  fresh process, {variant}: {rec['process_s']:.1f} s (first lab.train "
                f"{rec['first_train_s']:.2f} s: evaluate {rec['evaluate_s']:.2f} s, training "
                f"chunk {rec['train_chunk_s']:.2f} s)")
        shutil.rmtree(Path(tmp) / "numba-cache", ignore_errors=True)
    machine = machine_info(peers)
    machine["load_start"], machine["load_end"] = load_start, os.getloadavg()[0]
    doc = {"machine": machine, "quick": quick, "notes": notes, "results": results}
    (out_dir / "bench-results.json").write_text(json.dumps(doc, indent=1))
    write_markdown(out_dir / "bench-results.md", results, machine, peers, notes, quick)
    plot(out_dir / "bench-steps-per-second.png", results, peers)
    log("")
    log(f"Machine: {machine_line(machine)}")
    log(step_table(results, peers))
    log(load_table(results))
    for line in other_lines(results) + [f"Note: {n}" for n in notes]:
        log(line)
    log(f"wrote {out_dir / 'bench-results.json'}, bench-results.md, bench-steps-per-second.png")
    return doc


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.bench",
                                     description=PACKAGE_DOC.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="under a minute: fewer rounds, no 512-wide shape")
    parser.add_argument("--out", default=".", help="directory for the results (default: .)")
    parser.add_argument("--peers", default="torch,jax",
                        help="comma-separated peers to include when installed (default: "
                             "torch,jax; '' for numpy and numba only)")
    parser.add_argument("--only-load", action="store_true",
                        help="only the load-tolerance measurement (idle vs one core busy)")
    names = {shape_name(s): s for s in SHAPES}

    def shape_list(text):
        asked = text.split(",")
        unknown = [n for n in asked if n not in names]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown shape {', '.join(unknown)}; the bench's "
                                             f"shapes are {', '.join(names)}")
        return [names[n] for n in asked]

    parser.add_argument("--shapes", type=shape_list,
                        help=f"comma-separated subset of the step shapes: {', '.join(names)} "
                             "(default: all, or the first three with --quick)")
    args = parser.parse_args(argv)
    run(args.out, quick=args.quick, backends={p for p in args.peers.split(",") if p},
        only_load=args.only_load, only_shapes=args.shapes)


if __name__ == "__main__":
    main()
