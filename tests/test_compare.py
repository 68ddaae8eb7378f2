"""The recipe comparison: run plan, history summaries, and a tiny end-to-end run."""

import json

import pytest

import ei_keras
from ei_keras.evaluation.compare import compare, history_summary, planned_runs


def test_plan_covers_presets_adaptive_and_ablations():
    names = [run[0] for run in planned_runs((10, 30), ("baseline", "improved"), {10, 30}, 30)]
    assert names == ["baseline-10s", "improved-10s", "improved-adaptive-10s", "baseline-30s",
                     "improved-30s", "improved-adaptive-30s",
                     "improved-average-pooling-30s", "improved-no-variance-penalty-30s"]
    ablations = planned_runs((30,), ("improved",), set(), 30)[1:]
    assert [run[4] for run in ablations] == [{"pooling": "average"}, {"variance_weight": 0.0}]


def test_history_summary_counts_convergence_and_roughness():
    losses = [2.0, 1.5, 1.6, 1.1, 1.0, 1.02]
    summary = history_summary([{"loss": v + 0.1, "val_loss": v} for v in losses])
    assert summary["best_val_nll"] == 1.0 and summary["best_epoch"] == 5
    assert summary["epochs_to_converge"] == 5  # first epoch within 5 % of the total drop
    assert summary["val_rises"] == pytest.approx(2 / 5)
    assert summary["val_roughness"] == pytest.approx((0.1 + 0.02) / 1.0)


def _train_and_test_sets(folder, n_samples):
    """A tiny training set (seed 1) and test set (seed 2) of 10 s prefixes."""
    config = {"n_samples": n_samples, "prefix_lengths": [10], "n_times": 51,
              "measurement_model": {"use_probe_lag": False, "use_offset": False}}
    return [ei_keras.generate_dataset(dict(config, seed=seed), folder / f"{name}.h5",
                                      progress=False, workers=1)
            for seed, name in ((1, "train"), (2, "test"))]


def test_tiny_comparison_writes_table_and_page(tmp_path):
    train, test = _train_and_test_sets(tmp_path, 48)
    results = compare(train, tmp_path / "cmp", prefix_lengths=(10,), presets=("improved",),
                      test_data=test, progress=False, epochs=2, batch_size=16)
    assert [r["name"] for r in results] == [
        "improved-10s", "improved-average-pooling-10s", "improved-no-variance-penalty-10s"]
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert saved[0]["epochs"] == 2 and len(saved[0]["learning_rate"]) == 2
    assert {"r2", "coverage90", "nll"} <= set(saved[0]["test"]["activity"])
    assert "improved-10s" in (tmp_path / "cmp" / "table.md").read_text()
    assert "plotly" in (tmp_path / "cmp" / "compare.html").read_text()


@pytest.mark.backend
def test_a_one_run_comparison_trains_and_scores_under_the_current_backend(tmp_path):
    import keras

    train, test = _train_and_test_sets(tmp_path, 32)
    results = compare(train, tmp_path / "cmp", prefix_lengths=(10,), presets=("improved",),
                      test_data=test, progress=False, ablation_prefix=None, epochs=1,
                      batch_size=16, workers=1)
    assert [r["name"] for r in results] == ["improved-10s"]
    assert results[0]["epochs"] == 1 and "r2" in results[0]["test"]["activity"]
    run_config = json.loads((tmp_path / "cmp" / "runs" / "improved-10s" / "config.json").read_text())
    assert run_config["environment"]["backend"] == keras.backend.backend()
