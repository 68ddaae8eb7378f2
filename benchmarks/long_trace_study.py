"""What lets the binned network learn k_d from long traces? A small study of network variants.

Every variant trains the same small binned network (``anyformat`` preset, 30 epochs, one
warmup epoch, plateau patience 3) on the same 24 000 any-format traces of 200–600 s
(reading every 0.3–5 s, probe lag and offset on, all four latents inferred; seed 21) and
is scored on 3000 held-out traces of the same kind (seed 22): per parameter the Gaussian
NLL in the space the network predicts in (log10 activity, logits of the others over their
prior range; the same space for every variant, so comparable), and the median Spearman
correlation over 100 of those traces between the attention on each reading and the
Fisher information the reading carries about the parameter (how well the attention
says which readings carried the answer). Variants:

    local      the architecture as it is: TCN of 21 bins' receptive field, attention pooling
    average    the same with plain average pooling instead of attention
    bins128    128 time bins instead of 64
    dilated    one TCN stack with dilations 1 4 16 (receptive field: the whole trace)
    global     the local TCN and attention, plus a whole-trace stack (global_dilations 4 16)

    python benchmarks/long_trace_study.py [--variants local global] [--out runs/long_study]

Each variant takes 2–5 min on two cores; the data (about 250 MB) is made once in --out.
"""

import argparse
import json
from pathlib import Path

import numpy as np

VARIANTS = {
    "local": {},
    "average": {"pooling": "average"},
    "bins128": {"model": {"n_bins": 128}},
    "dilated": {"model": {"dilations": [1, 4, 16]}},
    "global": {"model": {"global_dilations": [4, 16]}},
}
SCHEDULE = {"epochs": 30, "warmup_epochs": 1, "plateau_patience": 3}
DATA = {"prefix_lengths": [], "infer_params": ["activity", "k_d", "tau_probe", "pH_offset"],
        "any_format": {"enabled": True, "prefix_length_s": [200.0, 600.0],
                       "reading_interval_s": [0.3, 5.0], "timing_jitter": 0.1,
                       "drop_fraction": 0.05}}
N_ATTENTION = 100


def dataset(out, name, n_samples, seed):
    from ei_keras.data import generate_dataset

    path = out / f"{name}.h5"
    if not path.exists():
        generate_dataset(dict(DATA, n_samples=n_samples, seed=seed), path, progress=False)
    return path


def score(model_path, test_path):
    """Per parameter: held-out NLL in the network's space and the attention agreement."""
    from ei_keras.data import load_any_format
    from ei_keras.inference.information import attention_agreement, reading_information
    from ei_keras.inference.posterior import load_model
    from ei_keras.models import decode_predictions, target_codec
    from ei_keras.simulation import KNOWN_NAMES

    model, data = load_model(model_path), load_any_format(test_path)
    codec = target_codec(model)
    outputs = [model.predict_on_batch({"pH": data.pH[s:s + 500], "t": data.t[s:s + 500],
                                       "known": data.known[s:s + 500]})
               for s in range(0, len(data.pH), 500)]
    posterior = np.concatenate([o["posterior"] for o in outputs])
    attention = np.concatenate([o["attention"] for o in outputs])
    y, p = codec.encode(data.targets), len(data.target_names)
    mean = posterior[:, :p]
    log_var = np.clip(posterior[:, p:], codec.log_var_min, codec.log_var_max)
    nll = 0.5 * (np.log(2 * np.pi) + log_var + (y - mean) ** 2 / np.exp(log_var))
    nll = nll.mean(axis=0) + np.log(np.asarray(codec.scale))  # standardised → network space
    decoded = decode_predictions(model, posterior[:N_ATTENTION])
    rhos = []
    for row in range(N_ATTENTION):
        valid = np.isfinite(data.t[row]) & np.isfinite(data.pH[row])
        information = reading_information(
            data.t[row, valid], dict(zip(KNOWN_NAMES, map(float, data.known[row]))),
            {name: float(d["median"][row]) for name, d in decoded.items()},
            {name: d["transform"] for name, d in decoded.items()},
            {name: d.get("bounds") for name, d in decoded.items()}, 0.01)
        rhos.append(attention_agreement(attention[row, valid], information))
    return {name: {"nll": float(nll[j]),
                   "attention_spearman": float(np.nanmedian([r[name] for r in rhos]))}
            for j, name in enumerate(data.target_names)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS),
                        default=list(VARIANTS))
    parser.add_argument("--out", default="runs/long_study")
    args = parser.parse_args()
    from ei_keras.training import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_path = dataset(out, "train", 24_000, 21)
    test_path = dataset(out, "test", 3000, 22)
    rows = {}
    for variant in args.variants:
        run = out / variant
        best = run / "best.keras"
        if not best.exists():
            train(train_path, "any", "anyformat", run, verbose=0,
                  **{**SCHEDULE, **VARIANTS[variant]})
        rows[variant] = score(best, test_path)
        (run / "score.json").write_text(json.dumps(rows[variant], indent=1))
    names = next(iter(rows.values())).keys()
    print(f"{'variant':<9}" + "".join(f"{name + ' NLL':>15}" for name in names)
          + "".join(f"{name + ' attn ρ':>17}" for name in names))
    for variant, result in rows.items():
        print(f"{variant:<9}" + "".join(f"{result[n]['nll']:>15.3f}" for n in names)
              + "".join(f"{result[n]['attention_spearman']:>17.2f}" for n in names))


if __name__ == "__main__":
    main()
