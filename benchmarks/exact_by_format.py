"""Network vs exact posterior per trace format: the project's measure of "sharp and honest".

    python benchmarks/exact_by_format.py --data data/test_grid.h5 [--model M.keras]
        [--per-cell 8] [--out exact_by_format.json]

Takes the first ``--per-cell`` traces of every prefix length × reading interval cell of an
any-format test set (generated with ``--format-grid``), runs :func:`ei_keras.refine` (the
exact posterior by importance sampling) on each, and prints per cell and over all cells:
the median and 90th percentile of network σ / exact σ, the RMS error of the network's
median over that of the exact median (both against the truth, in the network's space),
the median offset of the network's median in exact σ, the 90 % coverage of the truth by
both, the forecast RMSE of both, and how many exact answers were reliable.
"""

import argparse
import types

import numpy as np

import ei_keras
from ei_keras.data import load_any_format
from ei_keras.evaluation.by_format import INTERVAL_CELLS_S, PREFIX_CELLS_S, format_cells
from ei_keras.evaluation.exact import error_ratio, exact_check
from ei_keras.fileio import write_json
from ei_keras.inference import load_model


def subset(data, rows):
    return types.SimpleNamespace(t=data.t[rows], pH=data.pH[rows], known=data.known[rows],
                                 known_names=data.known_names, latent=data.latent[rows],
                                 latent_names=data.latent_names)


def summarise(records, names):
    """Aggregate per-trace records of :func:`exact_check` (reliable traces only)."""
    reliable = [r for r in records if "parameters" in r]
    row = {"n": len(records), "reliable": len(reliable)}
    for name in names:
        values = [r["parameters"][name] for r in reliable]
        if not values:
            continue
        ratio = np.array([v["std_ratio"] for v in values], float)
        row[name] = {
            "error_ratio": error_ratio([v["error_network"] for v in values],
                                        [v["error_exact"] for v in values]),
            "std_ratio_median": float(np.nanmedian(ratio)),
            "std_ratio_p90": float(np.nanpercentile(ratio, 90)),
            "offset_sigma_median": float(np.nanmedian([v["offset_sigma"] for v in values])),
            "coverage90_network": float(np.mean([v["covered_network"] for v in values])),
            "coverage90_exact": float(np.mean([v["covered_exact"] for v in values]))}
    with_forecast = [r["forecast_mse"] for r in reliable if "forecast_mse" in r]
    if with_forecast:
        row["forecast_rmse"] = {which: float(np.sqrt(np.mean([f[which] for f in with_forecast])))
                                for which in ("network", "exact")}
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="any-format test set (--format-grid)")
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--per-cell", type=int, default=8)
    parser.add_argument("--n-samples", type=int, default=2000)
    parser.add_argument("--out", default=None, help="also write the table as JSON")
    args = parser.parse_args()
    model = load_model(args.model or ei_keras.default_model_path())
    data = load_any_format(args.data)
    prefix_index, interval_index = format_cells(data)
    names = None
    cells, everything = [], []
    print(f"{'cell':<16}{'ok':>6}  network σ / exact σ (median, p90) | error ratio | offset | "
          f"cov90 net/exact | forecast RMSE net/exact")
    for i, length in enumerate(PREFIX_CELLS_S):
        for j, interval in enumerate(INTERVAL_CELLS_S):
            rows = np.flatnonzero((prefix_index == i) & (interval_index == j))[:args.per_cell]
            if not rows.size:
                continue
            report = exact_check(model, subset(data, rows), len(rows), n_samples=args.n_samples,
                                 n_times=201)
            names = names or list(report["parameters"])
            row = summarise(report["traces"], names)
            row.update(prefix_length_s=length, reading_interval_s=interval)
            cells.append(row)
            everything += report["traces"]
            print(format_row(f"{length:g} s / {interval:g} s", row, names), flush=True)
    overall = summarise(everything, names)
    print(format_row("all cells", overall, names))
    if args.out:
        write_json(args.out, {"cells": cells, "overall": overall})


def format_row(label, row, names):
    parts = [f"{label:<16}{row['reliable']:>3}/{row['n']:<3}"]
    for name in names:
        if name in row:
            p = row[name]
            parts.append(f"{name} {p['std_ratio_median']:.2f},{p['std_ratio_p90']:.2f} "
                         f"err {p['error_ratio']:.2f} "
                         f"off {p['offset_sigma_median']:.2f} cov {p['coverage90_network']:.2f}/"
                         f"{p['coverage90_exact']:.2f}")
    if "forecast_rmse" in row:
        parts.append(f"fc {row['forecast_rmse']['network']:.3f}/{row['forecast_rmse']['exact']:.3f}")
    return " | ".join(parts)


if __name__ == "__main__":
    main()
