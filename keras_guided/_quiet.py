"""A quiet `keras-guided` command: no TensorFlow C++ log lines by default.

TensorFlow's native code writes to file descriptor 2 directly: start-up
lines when it is imported (`port.cc` oneDNN notice, `cudart_stub.cc`,
`cpu_feature_guard.cc`, printed before absl logging is initialized, so
`TF_CPP_MIN_LOG_LEVEL` does not hide them all) and a page of converter
lines per `.tflite` conversion (`flatbuffer_export.cc`, SavedModel
`reader.cc`/`loader.cc`). Python cannot filter them, so the command line
points descriptor 2 at `os.devnull` while TensorFlow is imported and while
a command runs, and points Python's own `sys.stderr` at a copy of the real
descriptor, so our messages, warnings and tracebacks still reach the
terminal. `--verbose` leaves everything as it is.

The start-up lines are printed when `keras_guided` itself is imported
(it imports Keras, which imports TensorFlow), before any code of
`keras_guided.cli` runs; so `keras_guided/__init__.py` calls
`quiet_start_if_command()` first. It acts only in a process started as the
command (`keras-guided ...`, `python -m keras_guided ...` or
`python -m keras_guided.cli ...`), never when a program or notebook imports
the package.
"""

import contextlib
import io
import os
import sys

COMMAND_MODULES = ("keras_guided", "keras_guided.cli")
COMMAND_NAMES = ("keras-guided", "keras-guided.exe")
VERBOSE_FLAG = "--verbose"
_OPTIONS_WITH_VALUE = ("-W", "-X", "--check-hash-based-pycs")
# Read by TensorFlow's C++ logging and by gRPC when TensorFlow loads; set
# only where the user has not (oneDNN stays on: turning it off would change
# the numbers, not only the messages).
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GRPC_VERBOSITY": "ERROR",
}


def started_as_command(argv=None, orig_argv=None):
    """Whether this process is the `keras-guided` command.

    Args:
        argv: `sys.argv` (the default).
        orig_argv: `sys.orig_argv` (the default): the interpreter's own
            arguments, which show `-m keras_guided.cli` while the package is
            still being imported.
    """
    argv = sys.argv if argv is None else argv
    orig_argv = (
        getattr(sys, "orig_argv", []) if orig_argv is None else (orig_argv)
    )
    if argv and os.path.basename(argv[0]) in COMMAND_NAMES:
        return True
    position = 1
    while position < len(orig_argv) - 1:
        argument = orig_argv[position]
        if argument == "-m":
            return orig_argv[position + 1] in COMMAND_MODULES
        if argument == "-c" or not argument.startswith("-"):
            return False  # A command string or a script, not `-m`.
        # Interpreter options that take a value as the next argument.
        position += 2 if argument in _OPTIONS_WITH_VALUE else 1
    return False


def verbose_requested(argv=None):
    argv = sys.argv if argv is None else argv
    return VERBOSE_FLAG in argv[1:]


def quiet_start_if_command():
    """In the `keras-guided` command without `--verbose`: quiet
    environment defaults for TensorFlow's native logging.

    TensorFlow itself is imported later, by the subcommand that needs it,
    inside `native_stderr_silenced` (see `keras_guided.cli.main`), so
    `--help` never loads it. Changes nothing in any other process.
    Returns whether it acted.
    """
    if not started_as_command() or verbose_requested():
        return False
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    return True


def _writes_to_descriptor_2(stream):
    try:
        return stream.fileno() == 2
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return False


@contextlib.contextmanager
def native_stderr_silenced(enabled=True):
    """Points file descriptor 2 at `os.devnull` for the block.

    Native libraries (TensorFlow's C++ logging) write there directly.
    When `sys.stderr` writes to descriptor 2, it is swapped for a stream on
    a copy of the original descriptor for the block, so Python-level
    messages (errors, warnings, tracebacks) still appear. Both are restored
    afterwards, also on an exception.

    Args:
        enabled: `False` makes it a no-op (for `--verbose`). Defaults to
            `True`.
    """
    if not enabled:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    replacement = None
    try:
        if _writes_to_descriptor_2(python_stderr):
            replacement = open(
                os.dup(saved),
                "w",
                buffering=1,
                encoding=getattr(python_stderr, "encoding", None) or "utf-8",
                errors="backslashreplace",
            )
            sys.stderr = replacement
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        if replacement is not None:
            with contextlib.suppress(OSError, ValueError):
                replacement.flush()
            sys.stderr = python_stderr
            replacement.close()
        os.dup2(saved, 2)
        os.close(saved)
