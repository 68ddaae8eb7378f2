"""Recipe comparisons (``ei-keras compare``) started from the dashboard, and which datasets
served as test sets."""

import math
import re
from pathlib import Path

from dashboard.jobs import LAUNCH_FILE, SHOWN, launch, launch_record, read_json
from dashboard.workspace import folder, unique_dir
from ei_keras.errors import EiKerasError
from ei_keras.evaluation.compare import planned_runs
from ei_keras.jobs import CRASHED, FINISHED, RUNNING, STATE_FILE, read_job
from ei_keras.run_directory import read_history

_TEST_NAME = re.compile(r"test|held|eval|valid", re.IGNORECASE)


def looks_like_test_set(dataset, used_for_testing=()) -> bool:
    """Whether a dataset is named like a test set or was the test set of a comparison."""
    return bool(_TEST_NAME.search(dataset["name"])) or dataset["name"] in used_for_testing


def training_choice(datasets) -> int:
    """Index of the dataset to offer for training: never a test set if another is there,
    then the one with the most samples (the newest among equals)."""
    tested = {c.get("test") for c in list_comparisons()}
    ranks = [(looks_like_test_set(d, tested), -d["n_samples"]) for d in datasets]
    return ranks.index(min(ranks))


def planned_comparison_runs(prefix_lengths, presets, ablation_prefix=30.0) -> list[str]:
    """Names of the runs a comparison will train."""
    lengths = [float(v) for v in prefix_lengths]
    if ablation_prefix not in lengths and lengths:
        ablation_prefix = lengths[0]
    return [run[0] for run in planned_runs(lengths, list(presets), set(), ablation_prefix)]


def comparison_error(data, test_data, prefix_lengths, presets) -> str | None:
    """Why a comparison cannot start with these choices, or None."""
    if not presets:
        return "choose at least one preset"
    if not prefix_lengths:
        return "choose at least one prefix length"
    if data is None or test_data is None:
        return "choose a training and a test dataset"
    if Path(data["path"]) == Path(test_data["path"]):
        return ("the test dataset must differ from the training dataset (generate one with "
                "another seed on the Data page)")
    missing = [v for v in prefix_lengths
               if not any(math.isclose(v, w) for w in test_data["prefix_lengths"])]
    if missing:
        return (f"the test dataset {test_data['name']} has no "
                f"{', '.join(f'{v:g}' for v in missing)} s prefix")
    return None


def start_comparison(data, test_data, prefix_lengths, presets, *, epochs=None,
                     max_samples=None) -> Path:
    """Launch ``ei-keras compare`` in its own process and directory; the directory."""
    problem = comparison_error(data, test_data, prefix_lengths, presets)
    if problem:
        raise EiKerasError(problem)
    out = unique_dir(folder("comparisons"), "compare")
    argv = ["compare", "--data", data["path"], "--test-data", test_data["path"],
            "--prefix-lengths", *[f"{float(v):g}" for v in prefix_lengths],
            "--presets", *presets, "--out", out, "--quiet"]
    if epochs:
        argv += ["--epochs", int(epochs)]
    if max_samples:
        argv += ["--max-samples", int(max_samples)]
    launch(argv, out, "compare.log", {
        "kind": "compare", "dataset_name": data["name"], "test_name": test_data["name"],
        "prefix_lengths": [float(v) for v in prefix_lengths], "presets": list(presets),
        "epochs": epochs, "max_samples": max_samples,
        "planned": planned_comparison_runs(prefix_lengths, presets)})
    return out


def comparison_info(out_dir) -> dict:
    """State, finished results, planned runs and the run that reported last of a
    comparison."""
    out_dir = Path(out_dir)
    meta = launch_record(out_dir)
    job = read_job(out_dir, pid=meta.get("pid"))
    results = read_json(out_dir / "results.json", []) or []
    fields = job.fields if job else {}
    info = {"id": out_dir.name, "dir": str(out_dir), "results": results,
            "planned": fields.get("planned") or meta.get("planned"),
            "dataset": meta.get("dataset_name", "?"), "test": meta.get("test_name", "?"),
            "state": SHOWN[job.state] if job else CRASHED, "message": None, "current": None}
    if job is None:
        info["message"] = "the comparison left no state (status.json)"
    elif info["state"] == RUNNING:
        info["current"] = _latest_run(out_dir, {r["name"] for r in results})
    elif info["state"] != FINISHED:
        info["message"] = job.message
    return info


def _latest_run(out_dir: Path, done: set) -> dict | None:
    """The running run of a comparison that reported last: its name and history."""
    running = [(job.updated or 0.0, run) for run in (out_dir / "runs").glob("*")
               if run.name not in done and (job := read_job(run)) and job.state == RUNNING]
    if not running:
        return None
    run = max(running)[1]
    return {"name": run.name, "history": read_history(run)}


def list_comparisons() -> list[dict]:
    """Comparisons made from the dashboard (and ``./comparison``, the command's default)."""
    dirs = sorted((d for d in folder("comparisons").iterdir() if (d / LAUNCH_FILE).exists()),
                  key=lambda d: d.name, reverse=True)
    default = Path("comparison").resolve()
    if (default / STATE_FILE).exists():
        dirs.append(default)
    return [comparison_info(d) for d in dirs]


def comparison_rows(results) -> list[dict]:
    """One table row per compared run: training curve summary and test metrics."""
    rows = []
    for r in results:
        row = {"run": r["name"], "status": r.get("status"), "epochs": r.get("epochs"),
               "best val NLL": r.get("best_val_nll"), "final val NLL": r.get("final_val_nll"),
               "epochs to converge": r.get("epochs_to_converge"),
               "share of epochs val rose": r.get("val_rises")}
        for name, metrics in (r.get("test") or {}).items():
            short = "log10 activity" if name == "activity" else name
            row[f"{short} R²"] = metrics.get("r2")
            row[f"{short} 90 % coverage"] = metrics.get("coverage90")
        rows.append(row)
    return rows
