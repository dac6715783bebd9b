"""B6's results file, `docs/benchmarks_b6.json`: read, and written one row
at a time.

`{"references": [{"arch", "seed", "val", "test", "epochs", ...}],
"cells": [{"arch", "budget", "method", "variant", "seed", "role",
"extra_epochs", "val", "test", "after_cut_val", "after_cut_test",
"flops_kept", "params", "seconds", ...}], "settings", "descriptions",
"variants", "chosen", "superseded"}`, accuracies as fractions. A row
replaces the one with the same key (`KEY` for cells, `REFERENCE_KEY` for
references: a seed's reference trained again, with other weights, is a
row of its own, and each cell names its reference's weights by
`reference_sha256`). Every write reads the file again under a lock and replaces
it atomically, so a killed run leaves the last complete file and two runs
writing one file keep each other's rows. `supersede` moves the cells of
a recipe the library has since changed to `"superseded"` (each with its
reason), so they are run again and stay on record.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile

import numpy as np

from benchmarks import b6_protocol as protocol
from benchmarks import report

DEFAULT_JSON = os.path.join("docs", "benchmarks_b6.json")
KEY = ("arch", "budget", "method", "variant", "seed", "extra_epochs")
# A retrained reference of a seed (its weights lost with a machine) is a
# row of its own: the cells name theirs by `reference_sha256`.
REFERENCE_KEY = ("arch", "seed", "epochs", "weights_sha256")


def cell_key(row):
    return tuple(row[k] for k in KEY)


def load_results(path):
    if path and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"references": [], "cells": []}


def pending_cells(path, arch, cells):
    """The planned `cells` of `arch` (`b6_protocol.plan_cells`) not yet in
    the JSON at `path`."""
    done = {cell_key(row) for row in load_results(path)["cells"]}
    return [c for c in cells if (arch, *c[:5]) not in done]


def reference_row(info, lr):
    """The JSON's row of a reference from its info (`b6_reference`'s
    `.json` file, or the quick mode's accuracies with `flops` and
    `params`) and its peak learning rate."""
    row = {"arch": info["arch"], "seed": info["seed"]}
    row.update({k: info[k] for k in ("val", "test", "epochs")})
    row.update({"lr": lr, "flops": info["flops"], "params": info["params"]})
    if "weights_sha256" in info:  # not in quick mode (no file)
        row["weights_sha256"] = info["weights_sha256"]
    return row


def put_row(rows, row, key_names):
    """`rows` with `row` in place of the one of the same key (else added
    at the end): a row written again keeps its place, so the file changes
    only where a value does."""
    key = tuple(row.get(k) for k in key_names)
    out, placed = [], False
    for old in rows:
        if tuple(old.get(k) for k in key_names) != key:
            out.append(old)
        elif not placed:
            out.append(row)
            placed = True
    return out if placed else out + [row]


@contextlib.contextmanager
def claim(path, arch, cell):
    """Holds a lock on one planned cell (`b6_protocol.plan_cells`) of the
    JSON at `path` while its body runs it; yields False, holding nothing,
    when another process holds it or the JSON has the cell by now. Two
    grids over the same cells then share them instead of running each
    twice."""
    key = json.dumps([os.path.abspath(path), arch, *cell[:5]])
    name = hashlib.sha1(key.encode()).hexdigest()[:16]
    lock = os.path.join(tempfile.gettempdir(), f"b6_cell_{name}.lock")
    with protocol.exclusive(lock) as mine:
        yield mine and bool(pending_cells(path, arch, [cell]))


@contextlib.contextmanager
def _locked(path):
    """Holds a lock named after `path` (in the temporary folder, not next
    to the file in the repository) so two grids writing one JSON take
    turns."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    name = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:16]
    lock = os.path.join(tempfile.gettempdir(), f"b6_results_{name}.lock")
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record(path, reference=None, cell=None, header=None):
    """Reads `path` again, puts the reference row and/or the cell row in
    by key, and writes it atomically; returns the results."""
    with _locked(path):
        results = load_results(path)
        for name, value in (header or {}).items():
            results.setdefault(name, {}).update(value)
        if reference is not None:
            results["references"] = put_row(
                results["references"], reference, REFERENCE_KEY
            )
        if cell is not None:
            results["cells"] = put_row(results["cells"], cell, KEY)
        report.write_atomic(path, json.dumps(results, indent=1, default=_plain))
    return results


def supersede(path, keep, reason):
    """Moves every cell for which `keep(row)` is false from `"cells"` to
    `"superseded"`, with `reason`; returns how many moved."""
    with _locked(path):
        results = load_results(path)
        moved = [row for row in results["cells"] if not keep(row)]
        results["cells"] = [row for row in results["cells"] if keep(row)]
        results.setdefault("superseded", []).extend(
            {**row, "superseded_because": reason} for row in moved
        )
        report.write_atomic(path, json.dumps(results, indent=1, default=_plain))
    return len(moved)


def expected_seconds(
    path, arch, method, extra_epochs, machine=None, variant=None
):
    """How long a cell of `method` with `extra_epochs` is expected to take,
    from the cells in the JSON (those timed on `machine` when there are
    any, `b6_cifar`'s `cifar.machine()`; of those, the cells of `variant`
    when there are any: one strength can take twice another's time): the
    longest of the same method and `E`, else the longest of the method
    scaled by `E` over its `E`. A method with no cell yet is expected to
    take as long as the longest cell of any method (the same way); None
    without any cell (a first cell runs)."""
    timed = [
        c
        for c in load_results(path)["cells"]
        if c["arch"] == arch and c.get("seconds")
    ]
    rows = [c for c in timed if c["method"] == method]
    # Variant names are a method's own: another method's "default" says
    # nothing of this one's.
    own = bool(rows)
    rows = rows or timed
    here = [c for c in rows if c.get("machine") == machine]
    rows = here or rows
    if own:
        mine = [c for c in rows if (c.get("variant") or "default") == variant]
        rows = mine or rows
    same = [c["seconds"] for c in rows if c["extra_epochs"] == extra_epochs]
    if same:
        return max(same)
    scaled = [c["seconds"] * extra_epochs / c["extra_epochs"] for c in rows]
    return max(scaled) if scaled else None


def show_choices(path):
    """The best tuning variant (validation accuracy, mean over tuning
    seeds) per `method|budget|E`, as a `CHOSEN` dict literal, each with
    every variant's validation %, best first."""
    scores = {}
    for row in load_results(path)["cells"]:
        if row.get("role") != "tune":
            continue
        key = f"{row['method']}|{row['budget']}|{row['extra_epochs']}"
        scores.setdefault(key, {}).setdefault(row["variant"], []).append(
            row["val"]
        )
    lines = ["CHOSEN = {"]
    for key in sorted(scores):
        means = {v: float(np.mean(s)) for v, s in scores[key].items()}
        best = max(sorted(means), key=means.get)
        ranked = sorted(means.items(), key=lambda item: -item[1])
        others = ", ".join(f"{v} {100 * m:.2f}" for v, m in ranked)
        lines.append(f"    {key!r}: {best!r},  # val: {others}")
    lines.append("}")
    return "\n".join(lines)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
