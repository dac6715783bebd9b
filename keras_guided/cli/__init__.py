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

Where each part lives: `_parser` (the arguments of every subcommand),
`_commands` (what each subcommand does), `_files` (checking, loading and
saving the command's files), `_messages` (progress lines and the one-line
errors, `CommandError`); `__main__` runs `main` for `python -m
keras_guided.cli`. The command modules import Keras, NumPy and the
TensorFlow-heavy modules of `keras_guided` (export, latency, surgery, the
demo) inside the functions that use them, on purpose: at module level the
command needs only `argparse` and `_quiet`, so `--help` and a malformed
command line are answered without loading them, and whatever native code
they load logs inside `main`'s muted block
(`_quiet.native_stderr_silenced`), not before it.
"""

from keras_guided import _quiet
from keras_guided.cli._messages import PROG
from keras_guided.cli._messages import CommandError
from keras_guided.cli._messages import fail
from keras_guided.cli._messages import one_line
from keras_guided.cli._parser import build_parser

__all__ = ["PROG", "CommandError", "main"]


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
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error from argparse.
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        with _quiet.native_stderr_silenced(enabled=not args.verbose):
            # The package's face loads lazily in the command process (so
            # `--help` needs no TensorFlow); a subcommand loads it whole
            # first, here, where TensorFlow's start-up lines are muted.
            import keras_guided

            keras_guided._import_public_api()
            return args.handler(args) or 0
    except CommandError as error:
        return fail(str(error))
    except (ValueError, OSError, ImportError, RuntimeError) as error:
        return fail(one_line(error))
    except KeyboardInterrupt:
        return fail("interrupted")
