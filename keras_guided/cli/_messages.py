"""What the command prints: progress lines, and bad inputs in one line.

Progress goes to stdout (flushed, so it interleaves with TensorFlow's own
output in order). A bad input is a `CommandError`, raised anywhere in a
command and reported by `keras_guided.cli.main` as one line on stderr,
`keras-guided: error: ...`, with exit code 1; other expected errors
(`ValueError`, `OSError`, ...) are cut to their first line by `one_line`.
"""

import sys

PROG = "keras-guided"


class CommandError(Exception):
    """A bad input that `main` reports in one line, with exit code 1."""


def fail(message):
    """Prints `message` as the command's one-line error; returns 1."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def one_line(error):
    """The first line of `error`'s message (for an `OSError`, its reason and
    file name)."""
    text = str(error).strip()
    if isinstance(error, OSError) and error.strerror and error.filename:
        text = f"{error.strerror}: '{error.filename}'"
    first = text.splitlines()[0] if text else type(error).__name__
    return first


def progress(message):
    """Prints a progress line on stdout, flushed."""
    print(message, flush=True)
