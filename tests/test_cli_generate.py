"""``ei-keras generate`` / ``demo`` as a user runs them: a summary on success, a one-line
error and no file on bad input, and no partial file when interrupted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ei_keras import load_prefix
from ei_keras.cli import build_parser, generate, main
from ei_keras.config import DEFAULT_DATASET_CONFIG, DatasetConfig, dataset_config
from ei_keras.settings import flags_of, from_dict

REPO = Path(__file__).resolve().parents[1]


def start_cli(*args, cwd):
    python_path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": python_path}
    return subprocess.Popen([sys.executable, "-m", "ei_keras.cli", *map(str, args)], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


def test_generate_merges_config_file_and_flags_and_prints_a_summary(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"n_samples": 100, "seed": 3, "prefix_lengths": [5, 20],
                                  "t_max": 50, "n_times": 11}))
    out = tmp_path / "out" / "data.h5"
    code, stdout, stderr = finish(start_cli(
        "generate", "--config", config, "--out", out, "--n-samples", 30,
        "--prefix-n-points", 12, "--workers", 2, "--no-progress", cwd=tmp_path))
    assert code == 0, stderr
    assert "samples:     30 (seed 3)" in stdout
    assert "5 s × 12 points, 20 s × 12 points" in stdout
    data = load_prefix(out, 20)
    assert data.pH.shape == (30, 12)
    assert data.config["seed"] == 3 and data.config["n_times"] == 11


def test_bad_config_gives_one_line_error_and_no_file(tmp_path):
    (tmp_path / "unknown.json").write_text(json.dumps({"measurement_model": {"sigma": 0.1}}))
    cases = {  # output name → (arguments, text the error must contain)
        "unknown": (["--config", "unknown.json"], "'measurement_model.sigma': unknown key"),
        "value": (["--n-samples", "0"], "Number of samples: got 0; allowed: an integer >= 1"),
    }
    processes = {name: start_cli("generate", *arguments, "--out", f"{name}.h5", cwd=tmp_path)
                 for name, (arguments, _) in cases.items()}
    for name, process in processes.items():
        code, _, stderr = finish(process)
        assert code == 2, (name, stderr)
        assert stderr.startswith("ei-keras generate: error: ") and stderr.count("\n") == 1
        assert "Traceback" not in stderr
        assert cases[name][1] in stderr, (name, stderr)
    assert [p.name for p in tmp_path.iterdir()] == ["unknown.json"]


@pytest.mark.parametrize("config, flags, expected", [
    ("{n_samples: 5", [], "not valid JSON"),
    ('{"measurement_model": {"use_probe_lag": false}}',
     ["--infer-params", "activity", "k_d", "tau_probe"], "tau_probe cannot be inferred"),
    ("{}", ["--prefix-lengths", "30", "30"], "Prefix lengths [s]: got [30.0, 30.0]"),
    ("{}", ["--workers", "0"], "workers: got 0"),
])
def test_more_bad_input_in_process(tmp_path, capsys, config, flags, expected):
    (tmp_path / "config.json").write_text(config)
    out = tmp_path / "data.h5"
    code = main(["generate", "--config", str(tmp_path / "config.json"), "--out", str(out),
                 "--no-progress", *flags])
    stderr = capsys.readouterr().err
    assert code == 2
    assert expected in stderr and stderr.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_interrupted_generation_leaves_no_partial_file(tmp_path):
    """Ctrl-C (SIGINT) and kill (SIGTERM), each while a large run is writing."""
    runs = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        folder = tmp_path / signum.name
        folder.mkdir()
        (folder / "data.h5").write_bytes(b"an earlier, good dataset")
        runs[signum] = folder, start_cli("generate", "--out", "data.h5", "--n-samples", 500_000,
                                         "--workers", 2, "--no-progress", cwd=folder)
    for signum, (folder, process) in runs.items():
        deadline = time.monotonic() + 120
        while not list(folder.glob("data.h5.tmp*")):  # writing has started
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signum)
    for signum, (folder, process) in runs.items():
        code, _, stderr = finish(process)
        assert code == 130, (signum.name, stderr)
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert (folder / "data.h5").read_bytes() == b"an earlier, good dataset"
        assert [p.name for p in folder.iterdir()] == ["data.h5"]


def test_demo_writes_a_small_dataset_and_prints_its_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--n-samples", "25", "--no-progress"]) == 0
    assert "samples:     25 (seed 0)" in capsys.readouterr().out
    assert load_prefix(tmp_path / "data" / "demo.h5", 300).pH.shape == (25, 100)


EXISTING_FLAGS = ("--n-samples", "--seed", "--t-max", "--n-times", "--prefix-lengths",
                  "--prefix-n-points", "--adaptive-n-points", "--target-dt", "--infer-params",
                  "--noise-std", "--any-format", "--prefix-range", "--interval-range",
                  "--format-grid", "--timing-jitter", "--drop-fraction", "--max-readings")


def test_every_dataset_setting_has_a_generate_flag(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    shown = capsys.readouterr().out
    missing = [flag for flag in (*flags_of(DatasetConfig), *EXISTING_FLAGS) if flag not in shown]
    assert not missing


def test_flags_set_every_section_of_the_config():
    args = build_parser().parse_args([
        "generate", "--out", "x.h5", "--noise-std", "0.02", "--no-probe-lag",
        "--param-range", "volume_L", "0.2", "0.4", "--any-format", "--min-readings", "4",
        "--format-grid", "--prefix-range", "30", "10", "--adaptive-n-points",
        "--target-dt", "0.5"])
    config = dataset_config({"seed": 9})
    config = from_dict(DatasetConfig, generate._flags_config(args), base=config).to_dict()
    assert config["seed"] == 9 and config["target_dt"] == 0.5
    assert config["measurement_model"]["noise_std"] == 0.02
    assert config["measurement_model"]["use_probe_lag"] is False
    assert config["param_ranges"]["volume_L"] == [0.2, 0.4]
    assert config["param_ranges"]["k_d"] == [0.0, 5e-3]
    assert config["any_format"] == {**DEFAULT_DATASET_CONFIG["any_format"], "enabled": True,
                                    "min_readings": 4, "sampling": "grid",
                                    "prefix_length_s": [10.0, 30.0]}


@pytest.mark.parametrize("flags, expected", [
    (["--target-dt", "0.5"], "--target-dt needs --adaptive-n-points"),
    (["--min-readings", "4"], "--min-readings needs --any-format"),
    (["--param-range", "volume_L", "1", "x"], "Prior ranges: got ['volume_L', '1', 'x']"),
])
def test_flags_that_mean_nothing_or_are_malformed_are_refused(tmp_path, capsys, flags, expected):
    code = main(["generate", "--out", str(tmp_path / "data.h5"), "--no-progress", *flags])
    stderr = capsys.readouterr().err
    assert code == 2 and expected in stderr and stderr.count("\n") == 1
