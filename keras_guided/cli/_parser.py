"""The command line's arguments: one subcommand per job, each with its
handler in `_commands`.

`--verbose` is accepted before and after the subcommand (`keras-guided
--verbose export ...` and `keras-guided export ... --verbose`); each
subparser's copy is suppressed when absent, so it never overwrites the
top-level value.
"""

import argparse

from keras_guided import _quiet
from keras_guided.cli import _commands
from keras_guided.cli._messages import PROG

VERBOSE_HELP = (
    "show TensorFlow's own log lines (C++ start-up messages, converter "
    "logs), which are hidden by default"
)


def build_parser():
    """The `keras-guided` argument parser; `args.handler(args)` runs the
    chosen command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Train Keras networks to be cut (guided regularization), remove "
            "the dead units, and export the result to TFLite."
        ),
    )
    parser.add_argument(
        _quiet.VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP
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
    demo.set_defaults(handler=_commands.run_demo)

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
    inspect.set_defaults(handler=_commands.run_inspect)

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
    prune.set_defaults(handler=_commands.run_prune)

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
    export.set_defaults(handler=_commands.run_export)

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
        "--num-samples",
        type=int,
        default=4,
        help="channel counts sampled per dimension (default: 4)",
    )
    latency.add_argument(
        "--num-runs",
        type=int,
        default=20,
        help="timed runs per sample (default: 20)",
    )
    latency.add_argument(
        "--cache-dir",
        default=None,
        help="cache folder (default: $KERAS_GUIDED_CACHE or "
        "~/.cache/keras_guided)",
    )
    latency.add_argument(
        "--no-measure",
        action="store_true",
        help="skip the whole-model calibration (the table then prices "
        "the layers alone)",
    )
    latency.set_defaults(handler=_commands.run_latency)
    for command in commands.choices.values():  # Also after the command.
        command.add_argument(
            _quiet.VERBOSE_FLAG,
            action="store_true",
            default=argparse.SUPPRESS,
            help=VERBOSE_HELP,
        )
    return parser
