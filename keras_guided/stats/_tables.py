"""Before/after tables of two models' costs, formatted as markdown."""

from keras_guided.stats._counts import layer_costs


def compare(before, after, shapes_before=None, shapes_after=None):
    """Per-layer before/after costs of two models, as a list of rows.

    Layers are matched by name; a layer missing from `after` counts as 0.
    `shapes_before` / `shapes_after` are the concrete shapes of a
    variable-length model's tensors (`keras_guided.graph.concrete_shapes`).

    Returns:
        A list of dicts with keys `layer`, `params_before`, `params_after`,
        `flops_before`, `flops_after`, and a final `"total"` row.
    """
    costs_before = layer_costs(before, shapes=shapes_before)
    costs_after = layer_costs(after, shapes=shapes_after)
    rows = []
    for name, cost in costs_before.items():
        other = costs_after.get(name, {"params": 0, "flops": 0})
        rows.append(
            {
                "layer": name,
                "params_before": cost["params"],
                "params_after": other["params"],
                "flops_before": cost["flops"],
                "flops_after": other["flops"],
            }
        )
    total = {"layer": "total"}
    for key in ("params_before", "params_after", "flops_before", "flops_after"):
        total[key] = sum(row[key] for row in rows)
    rows.append(total)
    return rows


def format_table(rows, columns=None):
    """Formats rows (dicts) as a markdown table with aligned columns.

    Examples:
        >>> import keras_guided
        >>> print(keras_guided.stats.format_table([{"a": 1, "b": "x"}]))
        | a | b |
        |---|---|
        | 1 | x |
    """
    if not rows:
        return ""
    columns = columns or list(rows[0])
    lines = [
        "| " + " | ".join(str(c) for c in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(_format_cell(row.get(c, "")) for c in columns)
            + " |"
        )
    return "\n".join(lines)


def _format_cell(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
