"""The on-disk cache of `keras_guided.latency` tables.

One JSON file per runtime and settings (`latency-<hash>.json`, the hash of
everything that changes a timing), holding `{"format", "settings",
"entries"}`; each entry is one measured layer signature. Written with
`_atomic.atomic_path` after every signature, so a reader never sees half a
file and an interrupted build keeps what it measured.
"""

import json
import os
import platform
import warnings

from keras_guided import _atomic

FORMAT = 1  # The file format; a file of another format is ignored.


def cpu_name():
    """The CPU model (timings depend on it)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_path(cache_dir, key):
    """The cache file of settings hashed to `key`, or `None` (disabled)."""
    if cache_dir is False:
        return None
    if cache_dir is None:
        cache_dir = os.path.join(
            os.environ.get(
                "KERAS_GUIDED_CACHE",
                os.path.join(os.path.expanduser("~"), ".cache", "keras_guided"),
            ),
            "latency",
        )
    os.makedirs(cache_dir, exist_ok=True)
    return os.path.join(cache_dir, f"latency-{key}.json")


def read(path, version):
    """The measured entries in `path` (`{}` if absent or unreadable)."""
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            content = json.load(f)
        if content.get("format") != version:
            return {}
        return dict(content["entries"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        warnings.warn(
            f"Ignoring the unreadable latency cache '{path}'; it will be "
            "rewritten.",
            stacklevel=3,
        )
        return {}


def write(path, version, settings, entries):
    """Writes the entries atomically (temporary file, then rename)."""
    content = {"format": version, "settings": settings, "entries": entries}
    with _atomic.atomic_path(path) as temporary:
        with open(temporary, "w") as f:
            json.dump(content, f, indent=1, sort_keys=True)
