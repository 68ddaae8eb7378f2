"""``ei-keras train``: train the network on one prefix length of a dataset."""

import argparse
import json

from ei_keras.errors import EiKerasError

# Command-line flag → training setting it overrides (see ei_keras.training.TrainConfig).
_OVERRIDES = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "learning_rate",
    "weight_decay": "weight_decay",
    "clipnorm": "global_clipnorm",
    "warmup_epochs": "warmup_epochs",
    "plateau_factor": "plateau_factor",
    "plateau_patience": "plateau_patience",
    "early_stopping_patience": "early_stopping_patience",
    "architecture": "architecture",
    "pooling": "pooling",
    "variance_weight": "variance_weight",
    "val_fraction": "val_fraction",
    "max_samples": "max_samples",
    "seed": "seed",
}


def _prefix_length(text):
    if text == "any":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds (e.g. 30) or 'any'; got {text!r}") from None


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train the network on one prefix length of a dataset",
        description="Train on the readings of one prefix length into a run directory "
        "(config.json, history.jsonl, status.json, best/last/final .keras). Flags override "
        "the --config file, which overrides the preset. Create RUN_DIR/stop to end "
        "training cleanly; --resume continues a run from its last epoch.",
    )
    parser.add_argument("--data", metavar="FILE.h5", required=True,
                        help="dataset from ei-keras generate")
    parser.add_argument("--prefix-length", type=_prefix_length, required=True,
                        metavar="SECONDS|any",
                        help="prefix length to train on, e.g. 30, or 'any' for the any-format "
                             "traces of a dataset made with --any-format (use --preset "
                             "anyformat)")
    parser.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/<time>-...)")
    parser.add_argument("--preset", choices=("improved", "anyformat", "baseline"),
                        help="training recipe (default: the config file's, else improved)")
    parser.add_argument("--config", metavar="TRAIN.json",
                        help="JSON object of training settings (names as in TrainConfig)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out after its last completed epoch (same "
                        "--data and --prefix-length; only --epochs may change)")
    parser.add_argument("--epochs", type=int, help="maximum epochs")
    parser.add_argument("--batch-size", type=int, help="samples per step")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, help="AdamW weight decay (0 = Adam)")
    parser.add_argument("--clipnorm", type=float, help="global gradient clip norm")
    parser.add_argument("--warmup-epochs", type=int, help="linear warmup epochs (0 = none)")
    parser.add_argument("--plateau-factor", type=float, help="learning-rate cut factor")
    parser.add_argument("--plateau-patience", type=int, help="epochs before a cut")
    parser.add_argument("--early-stopping-patience", type=int, help="epochs before stopping")
    parser.add_argument("--architecture", choices=("compact", "recipe", "binned"), help="network")
    parser.add_argument("--pooling", choices=("weighted", "average"), help="temporal pooling")
    parser.add_argument("--variance-weight", type=float, help="loss variance-penalty weight")
    parser.add_argument("--val-fraction", type=float, help="validation share of the samples")
    parser.add_argument("--max-samples", type=int, help="use only the first N samples")
    parser.add_argument("--seed", type=int, help="seed of split, weights and shuffling")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    parser.set_defaults(func=run)


def _read_config(path):
    try:
        with open(path, encoding="utf-8") as stream:
            settings = json.load(stream)
    except json.JSONDecodeError as error:
        raise EiKerasError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(settings, dict):
        raise EiKerasError(f"{path}: expected a JSON object of training settings")
    return settings


def run(args):
    from ei_keras.training import train

    settings = _read_config(args.config) if args.config else {}
    preset = args.preset or settings.pop("preset", None)  # None: improved, or the run's own
    settings.pop("preset", None)
    for flag, key in _OVERRIDES.items():
        if getattr(args, flag) is not None:
            settings[key] = getattr(args, flag)
    result = train(args.data, args.prefix_length, preset, args.out, resume=args.resume,
                   verbose=2 if args.quiet else "auto", **settings)
    last = result.history[-1] if result.history else {}
    losses = [r["val_loss"] for r in result.history if r.get("val_loss") is not None]
    rate = last.get("learning_rate")
    print(f"{result.status}: {len(result.history)} epochs, best val_loss "
          f"{min(losses, default=float('nan')):.4f}, last learning rate "
          f"{float('nan') if rate is None else rate:.3g}")
    print(f"run directory: {result.run_dir}  (best model: {result.best_path.name})")
    return 0 if result.status != "failed" else 1

