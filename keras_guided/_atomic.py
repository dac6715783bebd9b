"""Writing a file all at once: to a temporary file next to it, then a rename.

A reader never sees a half-written file, and a failed write leaves the old
file (or nothing) behind. The temporary file is created with
`os.open(..., 0o666)`, so the kernel applies the process umask and the
result has the permissions a plain `open(path, "w")` would give, without
reading or changing the umask (`os.umask` is process-wide and races with
other threads).
"""

import contextlib
import os
import secrets

_ATTEMPTS = 100


@contextlib.contextmanager
def atomic_path(path, prefix=".keras-guided."):
    """Yields a new, empty temporary path in `path`'s directory; renames it
    onto `path` when the block succeeds and removes it otherwise.

    Args:
        path: the file to write.
        prefix: start of the temporary file's name (hidden by default).

    Raises:
        OSError: when the directory cannot be written.
    """
    directory = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    temporary = _create(directory, prefix, suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def create_temporary(directory, prefix, suffix):
    """Creates a new, empty file in `directory` with the permissions a plain
    `open` gives (mode 0o666 less the umask) and returns its path."""
    return _create(directory, prefix, suffix)


def _create(directory, prefix, suffix):
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for _ in range(_ATTEMPTS):
        name = f"{prefix}{secrets.token_hex(8)}{suffix}"
        temporary = os.path.join(directory, name)
        try:
            os.close(os.open(temporary, flags, 0o666))
        except FileExistsError:
            continue
        return temporary
    raise FileExistsError(
        f"could not create a temporary file in '{directory}' after "
        f"{_ATTEMPTS} attempts; remove stale '{prefix}*' files there"
    )
