"""Dataset generation: one writer per output, stale temporary files, sizes bounded up front."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ei_keras.cli import main
from ei_keras.data import generate_dataset
from ei_keras.data import sizes
from ei_keras.errors import EiKerasError
from ei_keras.fileio import check_interrupted, exclusive_lock, interrupt_on_signals
from racing import refused_first

SMALL = {"n_samples": 20, "prefix_lengths": [10], "prefix_n_points": 20, "n_times": 20}

# A generate run that holds its output's lock until killed: it writes MARKER once inside.
HANGING = textwrap.dedent("""
    import sys, time
    from ei_keras.data import generate as generate_module
    from ei_keras.cli import main
    out, marker = sys.argv[1], sys.argv[2]
    layout = generate_module._create_layout
    def hang(handle, config):
        layout(handle, config)
        open(marker, "w").close()
        time.sleep(600)
    generate_module._create_layout = hang
    sys.exit(main(["generate", "--out", out, "--n-samples", "20", "--prefix-lengths", "10",
                   "--prefix-n-points", "20", "--n-times", "20", "--workers", "1",
                   "--no-progress"]))
""")


def _spawn(out, marker):
    return subprocess.Popen([sys.executable, "-c", HANGING, str(out), str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_generate_runs_to_one_out_and_the_stale_file_of_a_killed_one(tmp_path, capsys):
    out, marker = tmp_path / "data" / "x.h5", tmp_path / "marker"
    first, second = _spawn(out, marker), _spawn(out, marker)
    try:
        loser, winner = refused_first(first, second, timeout_s=120, poll_s=0.05,
                                      what="generate run")
        _, stderr = loser.communicate()
        assert loser.returncode == 2, stderr
        assert stderr.strip() == (
            f"ei-keras generate: error: output {out} is in use by pid {winner.pid}; wait for "
            f"that generate run to end, stop it, or choose another --out")
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert winner.poll() is None, winner.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        winner.kill()  # SIGKILL: no clean-up runs
        winner.communicate()
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.communicate()
    stale = list(out.parent.glob("x.h5.tmp*"))
    assert len(stale) == 1 and not out.exists()

    capsys.readouterr()
    generate_dataset(SMALL, out, workers=1, progress=False)
    err = capsys.readouterr().err
    assert f"warning: removed {stale[0]}" in err and "interrupted generate run" in err
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.h5"]  # no temp, no lock


def test_the_lock_names_the_holder_and_a_released_lock_file_blocks_nobody(tmp_path):
    lock = tmp_path / "x.h5.lock"
    with exclusive_lock(lock, "output x.h5"):
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(EiKerasError, match=f"output x.h5 is in use by pid {os.getpid()}"):
            with exclusive_lock(lock, "output x.h5"):
                pass
    assert not lock.exists()
    lock.write_text("12345\n")  # left behind by a dead process: no flock on it
    generate_dataset(SMALL, tmp_path / "x.h5", workers=1, progress=False)
    assert not lock.exists()


@pytest.mark.parametrize("change", [
    {"t_max": 1e12},
    {"use_adaptive_n_points": True, "target_dt": 1e-9},
    {"prefix_n_points": 100_000_000},
    {"n_samples": 10**12},
])
def test_impossible_sizes_are_refused_in_one_line_before_any_work(tmp_path, change):
    out = tmp_path / "x.h5"
    started = time.monotonic()
    with pytest.raises(EiKerasError) as excinfo:
        generate_dataset(dict(SMALL, **change), out, workers=1, progress=False)
    assert time.monotonic() - started < 5
    message = str(excinfo.value)
    assert "\n" not in message and ("memory" in message or "free" in message
                                    or "must be" in message), message
    assert not list(tmp_path.iterdir())


def test_the_memory_and_disk_bounds(tmp_path, monkeypatch):
    config = dict(SMALL, n_samples=5000)
    from ei_keras.config import resolve_dataset_config

    estimate = sizes.estimate_dataset_size(resolve_dataset_config(config), 1000)
    assert estimate["chunk_cases"] == 1000
    monkeypatch.setattr(sizes, "available_memory", lambda: estimate["chunk_bytes"])
    with pytest.raises(EiKerasError, match=r"needs about .* of memory per chunk of 1000 "
                                           r"samples .* lower t_max"):
        generate_dataset(config, tmp_path / "x.h5", workers=4, progress=False)
    monkeypatch.setattr(sizes, "available_memory", lambda: 3 * estimate["chunk_bytes"])
    resolved = resolve_dataset_config(config)
    assert sizes.check_dataset_fits(resolved, tmp_path / "x.h5", 4, 1000) == 1  # fewer workers

    class Disk:
        free = estimate["file_bytes"] - 1

    monkeypatch.setattr(sizes.shutil, "disk_usage", lambda path: Disk)
    with pytest.raises(EiKerasError, match=r"x.h5 would take about .* free; lower n_samples"):
        generate_dataset(config, tmp_path / "x.h5", workers=1, progress=False)
    assert not list(tmp_path.iterdir())


def test_the_file_estimate_is_an_upper_bound_close_to_the_real_size(tmp_path):
    from ei_keras.config import resolve_dataset_config

    config = resolve_dataset_config(dict(SMALL, n_samples=300))
    path = generate_dataset(config, tmp_path / "x.h5", workers=1, progress=False)
    real = path.stat().st_size
    estimate = sizes.estimate_dataset_size(config, 1000)["file_bytes"]
    assert real / 2 < estimate < 2 * real + 100_000


def test_an_out_whose_parent_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = main(["generate", "--out", str(tmp_path / "file" / "x.h5"), "--n-samples", "5",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'file'} is a file, not a directory" in err


def test_a_size_error_from_the_cli_is_one_line(tmp_path, capsys):
    code = main(["generate", "--out", str(tmp_path / "x.h5"), "--t-max", "1e12",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("ei-keras generate: error:")
    assert not list(Path(tmp_path).iterdir())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_whose_interrupt_was_swallowed_still_stops_the_loop(signum):
    # Python only prints a KeyboardInterrupt raised inside a finalizer or weakref
    # callback; the except clause below stands in for that.
    with pytest.raises(KeyboardInterrupt):
        with interrupt_on_signals():
            try:
                os.kill(os.getpid(), signum)
                time.sleep(1)
            except KeyboardInterrupt:
                pass
            check_interrupted()
    check_interrupted()  # the block has ended: nothing pending
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_lost_interrupt_is_not_printed_and_raised_again(monkeypatch):
    printed = []  # what Python would print as "Exception ignored in ..."
    monkeypatch.setattr(sys, "unraisablehook", printed.append)

    class Lost:
        def __del__(self):  # Python only prints an exception raised here
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):  # the handler runs inside __del__
                pass

    with pytest.raises(KeyboardInterrupt), interrupt_on_signals():
        Lost()
        check_interrupted()
    assert printed == []
