"""The `keras-guided` command line: `demo`, `inspect`, `prune`, `export`,
`latency`.

Every command returns an exit code: 0 on success, 1 with a one-line reason
on stderr when the input is bad (missing file, not a Keras model, unwritable
output, invalid option), 2 for a malformed command line (argparse).
Models are loaded with `keras.saving.load_model(..., safe_mode=True)`, so a
`.keras` file with embedded Python code (a Lambda layer) is refused.

Quiet by default: TensorFlow's C++ log lines (start-up notices, a page of
converter logs per export) are muted, Python's own messages are not;
`--verbose` shows everything (see `keras_guided/_quiet.py`). `main` is also
called in-process, by tests and notebooks, so it changes nothing
process-wide (no environment variables, no umask) and restores the stderr
descriptor it mutes when it returns; only a process started as the command
gets quiet environment defaults, before TensorFlow is imported.
"""

import argparse
import os
import sys
import tempfile
import zipfile

from keras_guided import _quiet

PROG = "keras-guided"


class CommandError(Exception):
    """A bad input that `main` reports in one line, with exit code 1."""


def main(argv=None):
    """Runs the `keras-guided` command line.

    Args:
        argv: list of arguments without the program name. Defaults to
            `None`: `sys.argv[1:]`.

    Returns:
        The exit code: 0 on success, 1 on bad input (the reason is printed
        on stderr in one line), 2 on a malformed command line.

    Examples:
        >>> import keras_guided.cli
        >>> keras_guided.cli.main(["inspect", "no_such_model.keras"])
        1
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error from argparse.
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        with _quiet.native_stderr_silenced(enabled=not args.verbose):
            return args.handler(args) or 0
    except CommandError as error:
        return _fail(str(error))
    except (ValueError, OSError, ImportError, RuntimeError) as error:
        return _fail(_one_line(error))
    except KeyboardInterrupt:
        return _fail("interrupted")


def _fail(message):
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def _one_line(error):
    text = str(error).strip()
    if isinstance(error, OSError) and error.strerror and error.filename:
        text = f"{error.strerror}: '{error.filename}'"
    first = text.splitlines()[0] if text else type(error).__name__
    return first


def _progress(message):
    print(message, flush=True)


def _parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Train Keras networks to be cut (guided regularization), remove "
            "the dead units, and export the result to TFLite."
        ),
    )
    parser.add_argument(
        _quiet.VERBOSE_FLAG, action="store_true", help=_VERBOSE_HELP
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo",
        help="train, prune, fine-tune and export a CNN on digits",
        description=(
            "Train a small CNN on scikit-learn digits with guided "
            "regularization, prune the dead units, fine-tune, export "
            ".tflite (float32 and int8) and print a before/after table."
        ),
    )
    demo.add_argument(
        "--out",
        default="keras_guided_demo",
        help="directory for the artifacts (default: ./keras_guided_demo)",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument(
        "--quick",
        action="store_true",
        help="a few epochs on a subset (seconds; for smoke tests)",
    )
    demo.set_defaults(handler=_run_demo)

    inspect = commands.add_parser(
        "inspect",
        help="unit groups, their norms, and what prune would remove",
    )
    inspect.add_argument("model", help="a .keras file")
    inspect.add_argument(
        "--skip-unsupported",
        action="store_true",
        help="leave the groups of unknown layers intact instead of failing",
    )
    inspect.set_defaults(handler=_run_inspect)

    prune = commands.add_parser(
        "prune",
        help="remove dead (or the least important) units; save a new model",
    )
    prune.add_argument("model", help="a .keras file")
    prune.add_argument(
        "-o", "--output", required=True, help="output .keras file"
    )
    prune.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="remove the units whose score (RMS of their weights) is below "
        "this value",
    )
    prune.add_argument(
        "--target",
        type=float,
        default=None,
        help="fraction to keep, in (0, 1]: the least important units are "
        "removed until only this fraction of the --target-kind is left",
    )
    prune.add_argument(
        "--target-kind",
        choices=("units", "params", "flops", "latency"),
        default="units",
        help="what --target measures (default: units); latency builds (or "
        "reads from the cache) a float32, 1-thread LiteRT latency table "
        "first, see `keras-guided latency`",
    )
    prune.add_argument(
        "--min-units",
        type=int,
        default=1,
        help="never make a layer narrower than this (default: 1)",
    )
    prune.add_argument(
        "--protect",
        action="append",
        default=[],
        metavar="LAYER",
        help="a layer name whose units are kept (repeatable)",
    )
    prune.add_argument(
        "--skip-unsupported",
        action="store_true",
        help="leave the groups of unknown layers intact instead of failing",
    )
    prune.set_defaults(handler=_run_prune)

    export = commands.add_parser(
        "export", help="export a .keras model to a verified .tflite file"
    )
    export.add_argument("model", help="a .keras file")
    export.add_argument(
        "-o", "--output", required=True, help="output .tflite file"
    )
    export.add_argument(
        "--quantize",
        choices=("none", "dynamic", "float16", "int8"),
        default="none",
        help="quantization mode (default: none, float32)",
    )
    export.add_argument(
        "--calibration",
        metavar="DATA.npy",
        help="typical inputs (N, ...) for int8 calibration and verification; "
        "for a model with several inputs, an .npz archive with one array "
        "per input name (np.savez('data.npz', token_ids=..., "
        "padding_mask=...))",
    )
    export.add_argument(
        "--sequence-length",
        type=int,
        default=None,
        help="the length for inputs declared with a None sequence length "
        "(keras-hub backbones' token ids and padding mask)",
    )
    export.add_argument(
        "--int8-io",
        action="store_true",
        help="with --quantize int8: int8 input and output tensors",
    )
    export.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the LiteRT-vs-Keras comparison",
    )
    export.add_argument(
        "--latency",
        action="store_true",
        help="measure the median interpreter latency on this machine",
    )
    export.add_argument(
        "--num-runs", type=int, default=50, help="timed runs (default: 50)"
    )
    export.add_argument(
        "--threads", type=int, default=1, help="interpreter threads"
    )
    export.set_defaults(handler=_run_export)

    latency = commands.add_parser(
        "latency",
        help="measure a per-layer LiteRT latency table (cached on disk)",
        description=(
            "Time every Conv/Depthwise/Dense layer alone in LiteRT at a few "
            "channel counts, print the predicted ms per layer at several "
            "widths, and compare the predicted total with the measured "
            "whole model. The table is cached, so `prune --target-kind "
            "latency` reuses it."
        ),
    )
    latency.add_argument("model", help="a .keras file")
    latency.add_argument(
        "--quantize",
        choices=("none", "dynamic", "float16", "int8"),
        default="none",
        help="the export mode to time (default: none, float32)",
    )
    latency.add_argument(
        "--threads", type=int, default=1, help="interpreter threads"
    )
    latency.add_argument(
        "--num-samples", type=int, default=4,
        help="channel counts sampled per dimension (default: 4)",
    )
    latency.add_argument(
        "--num-runs", type=int, default=20,
        help="timed runs per sample (default: 20)",
    )
    latency.add_argument(
        "--cache-dir", default=None,
        help="cache folder (default: $KERAS_GUIDED_CACHE or "
        "~/.cache/keras_guided)",
    )
    latency.add_argument(
        "--no-measure",
        action="store_true",
        help="skip the whole-model calibration (the table then prices "
        "the layers alone)",
    )
    latency.set_defaults(handler=_run_latency)
    for command in commands.choices.values():  # Also after the command.
        command.add_argument(
            _quiet.VERBOSE_FLAG, action="store_true",
            default=argparse.SUPPRESS, help=_VERBOSE_HELP,
        )
    return parser


_VERBOSE_HELP = (
    "show TensorFlow's own log lines (C++ start-up messages, converter "
    "logs), which are hidden by default"
)


# ----------------------------------------------------------------- loading


def _check_model_path(path):
    if not os.path.exists(path):
        raise CommandError(f"model file '{path}' does not exist")
    if os.path.isdir(path):
        raise CommandError(
            f"'{path}' is a directory, expected a .keras model file"
        )
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        raise CommandError(
            f"'{path}' is not a Keras model file (expected a .keras archive "
            "written by model.save('model.keras'))"
        )


def _load_model(path):
    """Loads a `.keras` file in safe mode, or raises a one-line `CommandError`.

    Args:
        path: path of a `.keras` file.

    Returns:
        The loaded `keras.Model` (not compiled).

    Raises:
        CommandError: if the file is missing or is not a loadable Keras model.
    """
    _check_model_path(path)
    _progress(f"loading {path} ...")
    import keras

    import keras_guided  # noqa: F401  (registers our serializable classes)

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Loading fails in many ways.
        raise CommandError(
            f"could not load '{path}' as a Keras model: {_one_line(error)}"
        ) from error
    if not isinstance(model, keras.Model):
        raise CommandError(
            f"'{path}' holds a {type(model).__name__}, expected a keras.Model"
        )
    return model


def _check_output(path, suffix):
    if not path.endswith(suffix):
        raise CommandError(
            f"the output file must end in '{suffix}'. Received: '{path}'"
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(f"output directory '{directory}' does not exist")
    if os.path.isdir(path):
        raise CommandError(f"output '{path}' is a directory")
    try:
        handle, probe = tempfile.mkstemp(dir=directory, prefix=".probe.")
    except OSError as error:
        raise CommandError(
            f"cannot write to output directory '{directory}' "
            f"({error.strerror})"
        ) from None
    os.close(handle)
    os.remove(probe)


def _save_model(model, path):
    """Saves `model` to `path` through a temporary file and a rename."""
    from keras_guided import _atomic

    with _atomic.atomic_path(path) as temporary:
        model.save(temporary)


# ---------------------------------------------------------------- commands


def _run_demo(args):
    from keras_guided import demo

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CommandError(f"--out '{args.out}' exists and is not a directory")
    demo.run_demo(out_dir=args.out, seed=args.seed, quick=args.quick)
    return 0


def _run_export(args):
    _check_output(args.output, ".tflite")
    quantization = None if args.quantize == "none" else args.quantize
    if quantization == "int8" and not args.calibration:
        raise CommandError(
            "--quantize int8 needs --calibration DATA.npy: a few hundred "
            "typical inputs, shape (N,) + the model's input shape"
        )
    if args.int8_io and quantization != "int8":
        raise CommandError("--int8-io needs --quantize int8")
    for name in ("num_runs", "threads"):
        if getattr(args, name) < 1:
            raise CommandError(
                f"--{name.replace('_', '-')} must be a positive integer. "
                f"Received: {getattr(args, name)}"
            )
    data = _load_calibration(args.calibration) if args.calibration else None
    model = _load_model(args.model)

    from keras_guided import export as export_lib

    mode = quantization or "float32"
    _progress(f"converting to TFLite ({mode}, built-in ops only) ...")
    report = export_lib.export_tflite(
        model,
        args.output,
        quantization=quantization,
        representative_data=data,
        int8_io=args.int8_io,
        verify=not args.no_verify,
        sample_inputs=None if data is None else _first_rows(data, 64),
        measure_latency=args.latency,
        num_runs=args.num_runs,
        num_threads=args.threads,
        sequence_length=args.sequence_length,
    )
    print(report.summary())
    return 0


def _load_calibration(path):
    import numpy as np

    if not os.path.isfile(path):
        raise CommandError(f"calibration file '{path}' does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise CommandError(
            f"could not read '{path}' as a .npy array or .npz archive: "
            f"{_one_line(error)}"
        ) from None
    if not isinstance(data, np.ndarray):  # An .npz: one array per input.
        with data:
            return {name: data[name] for name in data.files}
    return data


def _first_rows(data, count):
    if isinstance(data, dict):
        return {name: array[:count] for name, array in data.items()}
    return data[:count]


def _find_groups(model, skip_unsupported):
    from keras_guided import graph

    mode = "keep" if skip_unsupported else "raise"
    try:
        return graph.find_unit_groups(model, on_unsupported=mode)
    except ValueError as error:
        hint = "" if skip_unsupported else (
            " (use --skip-unsupported to leave such groups intact)"
        )
        raise CommandError(_one_line(error) + hint) from None


def _run_inspect(args):
    model = _load_model(args.model)
    import numpy as np

    from keras_guided import scoring
    from keras_guided import stats

    _progress("finding unit groups ...")
    groups = _find_groups(model, args.skip_unsupported)
    norms = scoring.unit_scores(groups, normalize=False)
    dead = scoring.dead_units(groups)
    rows = []
    for group, group_norms, group_dead in zip(groups, norms, dead):
        rows.append(
            {
                "group": group.index,
                "layers": ", ".join(group.layers),
                "units": group.num_units,
                "dead": int(np.sum(group_dead)),
                "norm min": float(np.min(group_norms)),
                "norm median": float(np.median(group_norms)),
                "norm max": float(np.max(group_norms)),
                "prunable": "yes"
                if group.prunable
                else f"no: {group.reason}",
            }
        )
    print(
        f"model '{model.name}': {stats.count_params(model):,} params, "
        f"{stats.count_flops(model):,} FLOPs per example, "
        f"{len(groups)} unit groups"
    )
    print(stats.format_table(rows))
    print(
        "norm: L2 norm of the weights that shape a unit's output (kernel "
        "slice, bias, BatchNormalization gamma and beta); dead: every "
        "incoming kernel weight is zero."
    )
    _progress("dry run of `keras-guided prune` (dead units only) ...")
    pruned, report = _prune(model, args, verify=False)
    after = stats.count_params(pruned)
    print(
        f"`keras-guided prune` would remove {report.removed_units} units in "
        f"{len(report.removed)} groups: {stats.count_params(model):,} -> "
        f"{after:,} params. Use --threshold or --target to remove live "
        "units too."
    )
    return 0


def _prune(model, args, verify=True):
    from keras_guided import surgery

    options = {}
    if getattr(args, "target_kind", None) == "latency" and (
            args.target is not None):
        from keras_guided import latency

        _progress("building the LiteRT latency table (float32, 1 thread; "
                  "cached) ...")
        options["latency_table"] = latency.build_latency_table(model)
    if getattr(args, "threshold", None) is not None:
        options["threshold"] = args.threshold
    if getattr(args, "target", None) is not None:
        if args.target_kind == "units":
            options["target"] = args.target
        else:
            options["target"] = {args.target_kind: args.target}
    try:
        return surgery.prune_model(
            model,
            min_units=getattr(args, "min_units", 1),
            protected=tuple(getattr(args, "protect", ())),
            on_unsupported="keep" if args.skip_unsupported else "raise",
            verify=verify,
            return_report=True,
            **options,
        )
    except ValueError as error:
        hint = ""
        if "unsupported" in str(error).lower() and not args.skip_unsupported:
            hint = " (use --skip-unsupported to leave such groups intact)"
        raise CommandError(_one_line(error) + hint) from None


def _run_prune(args):
    _check_output(args.output, ".keras")
    model = _load_model(args.model)
    from keras_guided import stats

    what = "dead units"
    if args.threshold is not None:
        what = f"units with score below {args.threshold}"
    if args.target is not None:
        what = f"down to {args.target:.0%} of the {args.target_kind} " \
            "(least important units first)"
    _progress(f"pruning {what} ...")
    pruned, report = _prune(model, args)
    print(report.summary())
    _progress(f"saving {args.output} ...")
    _save_model(pruned, args.output)
    print(
        f"wrote {os.path.abspath(args.output)}: "
        f"{stats.count_params(model):,} -> {stats.count_params(pruned):,} "
        "params"
    )
    return 0


def _run_latency(args):
    model = _load_model(args.model)
    from keras_guided import latency

    quantization = None if args.quantize == "none" else args.quantize
    _progress(f"measuring the latency table of '{model.name}' ...")
    table = latency.build_latency_table(
        model, quantization=quantization, num_threads=args.threads,
        num_samples=args.num_samples, num_runs=args.num_runs,
        cache_dir=args.cache_dir, whole_model=not args.no_measure,
    )
    print(table.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
