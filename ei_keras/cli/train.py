"""``ei-keras train``: train the network on one prefix length of a dataset."""

import argparse
import json

from ei_keras.errors import EiKerasError
from ei_keras.settings import add_flags, given_flags
from ei_keras.config import TrainConfig


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
    parser.add_argument("--data", metavar="FILE.h5", required=True, nargs="+",
                        help="dataset from ei-keras generate; several (same prior and "
                        "measurement model) are trained on as one, e.g. extra long traces "
                        "beside an any-format dataset")
    parser.add_argument("--prefix-length", type=_prefix_length, required=True,
                        metavar="SECONDS|any",
                        help="prefix length to train on, e.g. 30, or 'any' for the any-format "
                             "traces of a dataset made with --any-format (use --preset "
                             "anyformat)")
    parser.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/<time>-...)")
    parser.add_argument("--config", metavar="TRAIN.json",
                        help="JSON object of training settings (names as in TrainConfig)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out after its last completed epoch (same "
                        "--data and --prefix-length; only --epochs may change)")
    parser.add_argument("--init-from", metavar="MODEL.keras",
                        help="start a new run from this saved model's weights (fine-tuning, "
                        "e.g. on fresh data); give the network settings it was trained with")
    network = parser.add_argument_group(
        "network", "each overrides the architecture's value (and --model's, the config "
        "file's)")
    add_flags(parser.add_argument_group(
        "training settings", "each overrides the --config file's and the preset's value "
        "(default preset: the config file's, else improved)"), TrainConfig,
        groups={"model": network})
    parser.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    _add_execution_flags(parser)
    add_tracking_flags(parser)
    parser.set_defaults(func=run)


def _devices(text):
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of devices or 'all'; got "
                                         f"{text!r}") from None


def _add_execution_flags(parser):
    """How the run executes, not what it trains: not training settings; --resume may
    change them."""
    group = parser.add_argument_group("execution")
    group.add_argument("--stream", action="store_true",
                       help="read the dataset in blocks while training instead of loading it "
                            "(flat memory for data larger than memory)")
    group.add_argument("--devices", type=_devices, default=1, metavar="N|all",
                       help="train data parallel on N devices or all (jax backend only; the "
                            "batch size must divide evenly); default 1")


def add_tracking_flags(parser):
    """``--track`` and ``--tracking-uri`` (``ei-keras compare`` has them too)."""
    group = parser.add_argument_group("tracking")
    group.add_argument("--track", choices=("mlflow",),
                       help="also log settings, per-epoch loss/val_loss/learning rate and "
                            "the best model to MLflow (pip install 'ei_keras[mlflow]')")
    group.add_argument("--tracking-uri", metavar="URI",
                       help="MLflow tracking URI, e.g. http://host:5000 (default: "
                            "$MLFLOW_TRACKING_URI, else a folder 'mlruns': beside the run "
                            "directory for train, in --out for compare)")


def check_tracking_flags(args):
    """Refuse ``--tracking-uri`` without ``--track``."""
    if args.tracking_uri is not None and args.track is None:
        raise EiKerasError("--tracking-uri needs --track mlflow")


def _read_config(path):
    try:
        with open(path, encoding="utf-8") as stream:
            settings = json.load(stream)
    except json.JSONDecodeError as error:
        raise EiKerasError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(settings, dict):
        raise EiKerasError(f"{path}: expected a JSON object of training settings")
    return settings


def settings_given(args):
    """The training settings of the ``--config`` file with the flags over them (network
    flags over the file's network settings)."""
    settings = _read_config(args.config) if args.config else {}
    given = given_flags(args, TrainConfig)
    if "model" in given and isinstance(settings.get("model"), dict):
        given["model"] = {**settings["model"], **given["model"]}
    return {**settings, **given}


def run(args):
    from ei_keras.training import record_refusal, train

    try:  # train() writes its own refusals to RUN_DIR/status.json; these come before it
        settings = settings_given(args)
        preset = settings.pop("preset", None)  # None: improved, or the run's own
        check_tracking_flags(args)
        out, callbacks = args.out, []
        if args.track:
            from ei_keras.tracking import MlflowTracker
            from ei_keras.training import default_run_dir

            out = out or default_run_dir(preset or "improved", args.prefix_length)
            callbacks.append(MlflowTracker(out, args.tracking_uri))
    except Exception as error:
        record_refusal(args.out, error, resume=args.resume)
        raise
    result = train(args.data, args.prefix_length, preset, out, resume=args.resume,
                   init_from=args.init_from,
                   verbose=2 if args.quiet else "auto", stream=args.stream,
                   devices=args.devices, callbacks=callbacks, **settings)
    last = result.history[-1] if result.history else {}
    losses = [r["val_loss"] for r in result.history if r.get("val_loss") is not None]
    rate = last.get("learning_rate")
    print(f"{result.status}: {len(result.history)} epochs, best val_loss "
          f"{min(losses, default=float('nan')):.4f}, last learning rate "
          f"{float('nan') if rate is None else rate:.3g}")
    print(f"run directory: {result.run_dir}  (best model: {result.best_path.name})")
    return 0 if result.status != "failed" else 1

