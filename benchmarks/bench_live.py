"""Live early inference on held-out simulated runs: when does the answer settle, is the
settled answer right, and what does an update cost?

    python benchmarks/bench_live.py --model runs/any/best.keras [--runs 20] [--seed 20260]
        [--length 600] [--interval 1] [--rules 30:0.05 120:0.05] [--cost-rate 10] [--json OUT]

Draws ``--runs`` cases from the model's training prior (seed 20260: no dataset of ours was
generated with it), simulates each run's measured pH (probe lag, offset, noise 0.01) at one
reading every ``--interval`` s up to ``--length`` s, and feeds the readings to
:class:`ei_keras.LiveInference` one at a time, as a logger would. Per run: when the answer
settled (the default :class:`~ei_keras.inference.live.SettleRule`) and whether the settled
answer's 90 % bands — of the time to pH 8.5 and of the activity — contain the truth,
against the answer after the whole run. The true time to threshold is that of the
noise-free measured pH of the true parameters on a 0.1 s grid ("never" when not reached
within ``t_max``; a band reaching past ``t_max`` contains it). Most prior draws never reach
pH 8.5, so the time band's coverage is also given over the runs that do. "final median
inside" counts settled bands that contain the whole-run answer's median (did waiting
change the answer?). ``--rules WINDOW:TOL`` replays other settle rules over the same
updates. ``--cost-rate`` then times one more run at that many readings per second (one
update per reading).
"""

import argparse
import math
import time

import numpy as np

import ei_keras
from ei_keras.inference import load_model
from ei_keras.inference.least_squares import predict_readings
from ei_keras.inference.live import LiveInference, SettleRule
from ei_keras.inference.posterior import time_to_threshold
from ei_keras.jsonutil import dumps_strict
from ei_keras.models import model_info
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES
from ei_keras.simulation.measurement import measure
from ei_keras.simulation.priors import sample_priors, simulator_conditions

THRESHOLD, T_MAX = 8.5, 2000.0


def held_out_cases(model, n, seed):
    ranges = (model_info(model)["domain"] or {}).get("param_ranges")
    samples = sample_priors(np.random.default_rng(seed), n, ranges)
    return [{name: float(samples[name][i]) for name in KNOWN_NAMES + LATENT_NAMES}
            for i in range(n)]


def simulate_run(case, t, seed):
    conditions = simulator_conditions({name: np.array([value]) for name, value in case.items()})
    pH = measure(conditions, t, tau_probe=case["tau_probe"], pH_offset=case["pH_offset"],
                 noise_std=0.01, rng=np.random.default_rng(seed))[0]
    known = {name: case[name] for name in KNOWN_NAMES}
    grid = np.linspace(0.0, T_MAX, 20001)
    truth = predict_readings(grid, known, {name: np.array([case[name]]) for name in LATENT_NAMES})
    return known, pH, float(time_to_threshold(grid, truth, THRESHOLD)[0])


def run_case(model, case, t, seed):
    known, pH, reach_truth = simulate_run(case, t, seed)
    live = LiveInference(known, model, threshold=THRESHOLD, t_max=T_MAX)
    for time_s, reading in zip(t, pH):
        live.update(time_s, reading)
    return live, reach_truth


def first_settled(history, rule, time_floor):
    """Index of the first update at which ``rule`` holds, replayed over ``history``."""
    for index in range(len(history)):
        _, change = rule.assess(history[:index + 1], t_max=T_MAX, time_floor=time_floor)
        if change < rule.tolerance:
            return index
    return None


def judge(entry, final, case, reach_truth):
    """Does the answer ``entry`` contain the truth, and the whole-run answer's median?"""
    ttt = (entry["time_to_threshold_lo"], entry["time_to_threshold_hi"])
    act = (entry["activity_lo90"], entry["activity_hi90"])
    return {"at_s": entry["elapsed_s"],
            "ttt_in": bool(ttt[0] <= reach_truth <= ttt[1]),
            "act_in": bool(act[0] <= case["activity"] <= act[1]),
            "final_median_in": bool(ttt[0] <= final["time_to_threshold_median"] <= ttt[1]
                                    and act[0] <= final["activity_median"] <= act[1]),
            "act_width_ratio": math.log10(act[1] / act[0])
            / math.log10(final["activity_hi90"] / final["activity_lo90"])}


def summarise(name, judged, reached):
    """One table row: settle times and coverage of the answers in ``judged`` (None: never
    settled); ``reached``: per run, whether the true time to threshold is finite."""
    done = [(j, r) for j, r in zip(judged, reached) if j is not None]
    out = {"rule": name, "runs": len(judged), "settled": len(done)}
    if done:
        times = np.array([j["at_s"] for j, _ in done])
        out.update(
            settle_median_s=float(np.median(times)), settle_p10_s=float(np.percentile(times, 10)),
            settle_p90_s=float(np.percentile(times, 90)),
            coverage_ttt=float(np.mean([j["ttt_in"] for j, _ in done])),
            coverage_ttt_reached=float(np.mean([j["ttt_in"] for j, r in done if r]))
            if any(r for _, r in done) else None,
            coverage_activity=float(np.mean([j["act_in"] for j, _ in done])),
            final_median_inside=float(np.mean([j["final_median_in"] for j, _ in done])),
            activity_width_ratio=float(np.median([j["act_width_ratio"] for j, _ in done])))
    return out


def percent(value):
    return f"{100 * value:.0f}%" if value is not None else "–"


def seconds(value):
    return f"{value:.0f}" if np.isfinite(value) else "never"


def time_band(entry):
    return (f"[{seconds(entry['time_to_threshold_lo'])}, "
            f"{seconds(entry['time_to_threshold_hi'])}]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="an any-format model (default: shipped)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20260)
    parser.add_argument("--length", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    parser.add_argument("--rules", nargs="*", default=["30:0.1", "120:0.05"],
                        metavar="WINDOW:TOL", help="other settle rules to replay")
    parser.add_argument("--cost-rate", type=float, default=10.0,
                        help="readings per second of the cost run (0: skip)")
    parser.add_argument("--json", metavar="OUT.json", help="also write the results")
    args = parser.parse_args()
    model = load_model(args.model or ei_keras.default_model_path())
    cases = held_out_cases(model, args.runs, args.seed)
    t = np.arange(0.0, args.length + 1e-9, args.interval)
    rules = {f"{w}:{tol}": SettleRule(float(w), float(tol))
             for w, tol in (rule.split(":") for rule in args.rules)}
    judged = {"default": [], **{name: [] for name in rules}, "end": []}
    reached, costs, rows = [], [], []
    print(f"{'run':>3} {'activity':>9} {'t→8.5':>6} | {'settled':>7} {'t→8.5 90% band':>15} "
          f"{'activity 90% band':>19} in | {'whole run: t→8.5':>16} in")
    for index, case in enumerate(cases):
        live, reach_truth = run_case(model, case, t, seed=args.seed + 1 + index)
        history, final = live.history, live.history[-1]
        costs += [entry["compute_s"] for entry in history[1:]]  # the first one warms up
        reached.append(bool(np.isfinite(reach_truth)))
        floor = float(live.grid[1] - live.grid[0])
        indices = {"default": next((i for i, e in enumerate(history) if e["settled"]), None),
                   **{name: first_settled(history, rule, floor) for name, rule in rules.items()},
                   "end": len(history) - 1}
        for name, i in indices.items():
            judged[name].append(judge(history[i], final, case, reach_truth)
                                if i is not None else None)
        rows.append({"case": case, "reach_truth": reach_truth,
                     **{name: judged[name][-1] for name in judged}})
        mark = lambda j: ("y" if j["ttt_in"] else "n") + ("y" if j["act_in"] else "n")  # noqa: E731
        settled, end = judged["default"][-1], judged["end"][-1]
        if settled is not None:
            entry = history[indices["default"]]
            act = f"[{entry['activity_lo90']:.3g}, {entry['activity_hi90']:.3g}]"
            text = f"{entry['elapsed_s']:>6.0f}s {time_band(entry):>15} {act:>19} {mark(settled)}"
        else:
            text = f"{'no':>7} {'':>15} {'':>19}   "
        print(f"{index:>3} {case['activity']:>9.3g} {seconds(reach_truth):>6} | {text} | "
              f"{time_band(final):>16} {mark(end)}", flush=True)

    rule = live.rule
    names = {"default": f"{rule.window_s:g} s, {rule.tolerance:g} (default)",
             **{name: f"{name.split(':')[0]} s, {name.split(':')[1]}" for name in rules},
             "end": f"whole run ({args.length:g} s)"}
    summaries = [summarise(names[name], judged[name], reached) for name in judged]
    n_reached = sum(reached)
    print(f"\n{'settle rule':<22} {'settled':>7}  {'seconds: median [10–90%]':>24}  "
          f"{'90% band contains the truth:':>28} {'t→8.5':>6} {f'(reached, {n_reached})':>14} "
          f"{'activity':>9}  {'final median inside':>19}  {'act. width / final':>18}")
    for s in summaries:
        timing = (f"{s['settle_median_s']:.0f} [{s['settle_p10_s']:.0f}–{s['settle_p90_s']:.0f}]"
                  if s["settled"] else "")
        if s["settled"]:
            print(f"{s['rule']:<22} {str(s['settled']) + '/' + str(s['runs']):>7}  {timing:>24}  "
                  f"{'':>28} {percent(s['coverage_ttt']):>6} "
                  f"{percent(s['coverage_ttt_reached']):>14} {percent(s['coverage_activity']):>9}"
                  f"  {percent(s['final_median_inside']):>19}  {s['activity_width_ratio']:>18.2f}")
        else:
            print(f"{s['rule']:<22} {'0/' + str(s['runs']):>7}")
    costs = np.array(costs)
    result = {"model": str(args.model or ei_keras.default_model_path()), "seed": args.seed,
              "runs": args.runs, "interval_s": args.interval, "length_s": args.length,
              "summaries": summaries, "rows": rows,
              "cost_per_update_s": {"readings_per_s": 1.0 / args.interval,
                                    "median": float(np.median(costs)),
                                    "p95": float(np.percentile(costs, 95))}}
    print(f"\ncost per update at {1 / args.interval:g} reading/s: median "
          f"{1e3 * np.median(costs):.1f} ms, 95th percentile {1e3 * np.percentile(costs, 95):.1f} "
          f"ms ({len(costs)} updates)")
    if args.cost_rate > 0:
        rate_t = np.arange(0.0, args.length + 1e-9, 1.0 / args.cost_rate)
        started = time.perf_counter()
        live, _ = run_case(model, cases[0], rate_t, seed=args.seed)
        total = time.perf_counter() - started
        cost = np.array([entry["compute_s"] for entry in live.history[1:]])
        print(f"cost per update at {args.cost_rate:g} readings/s over {args.length:g} s "
              f"({len(rate_t)} readings, one update each): median {1e3 * np.median(cost):.1f} "
              f"ms, 95th percentile {1e3 * np.percentile(cost, 95):.1f} ms, max "
              f"{1e3 * cost.max():.0f} ms; {total:.0f} s of compute for {args.length:g} s of run "
              f"({100 * total / args.length:.0f}% of one core)")
        result["cost_rate"] = {"readings_per_s": args.cost_rate, "median": float(np.median(cost)),
                               "p95": float(np.percentile(cost, 95)), "max": float(cost.max()),
                               "total_s": total}
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(dumps_strict(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
