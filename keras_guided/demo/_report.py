"""What the demo reports: the before/after table, its explanation, and
the results files.

`table` is the markdown table `run_demo` prints and returns; `explanation`
the paragraph printed under it; `write_results` writes `results.md` (the
table) and `results.json` (every number of the run), each through a
temporary file and a rename, and adds both paths to the run's `files`.
"""

import json
import os


def table(before, after):
    """The before/after markdown table of two result rows (units, params,
    FLOPs, accuracy, `.tflite` bytes and latency), with their ratios."""
    from keras_guided import stats

    def ratio(key):
        if not before[key]:
            return ""
        return f"{after[key] / before[key]:.2f}x"

    def percent(value):
        return f"{value:.2%}"

    def size(value):
        return f"{value:,}"

    def milliseconds(value):
        return f"{value:.4f}"

    spec = [
        ("units (prunable layers)", "units", size, True),
        ("params", "params", size, True),
        ("FLOPs per image", "flops", size, True),
        ("test accuracy (Keras)", "accuracy", percent, False),
        (".tflite bytes, float32", "tflite_bytes_float32", size, True),
        (".tflite bytes, int8", "tflite_bytes_int8", size, True),
        ("test accuracy, int8 .tflite", "tflite_accuracy_int8", percent, False),
        ("latency ms, float32", "latency_ms_float32", milliseconds, True),
        ("latency ms, int8", "latency_ms_int8", milliseconds, True),
    ]
    rows = []
    for label, key, form, with_ratio in spec:
        rows.append(
            {
                "": label,
                "before": form(before[key]),
                "after (pruned + fine-tuned)": form(after[key]),
                "after / before": ratio(key) if with_ratio else "",
            }
        )
    return stats.format_table(rows)


def explanation(summary, settings, num_validation):
    """The paragraph printed under the table: what "before" is, that removal
    is exact, which fine-tune epoch was kept, and how latency is timed."""
    accuracy_after_pruning = summary["accuracy_right_after_pruning"]
    accuracy_trained = summary["accuracy_trained_with_budget"]
    finetune = summary["finetune"]
    return (
        '"before" is the plain network (no penalty), trained for '
        f"{settings['epochs']} epochs. Accuracy right after removing "
        f"the dead units: {accuracy_after_pruning:.2%}, the same as the "
        f"budget-trained network's ({accuracy_trained:.2%}): removal "
        "is exact. The fine-tune kept epoch "
        f"{finetune['kept_epoch']} of {settings['finetune_epochs']} "
        "(0: right after removal), the best on "
        f"{num_validation} validation images "
        f"({finetune['validation_accuracy_right_after_pruning']:.2%} ->"
        f" {finetune['validation_accuracy']:.2%}). Latency is the "
        "median of batch-1 LiteRT runs on this machine, 1 thread. "
        f"Seed {summary['seed']}: the same numbers on this machine, others "
        "may differ."
    )


def write_results(out_dir, summary):
    """Writes `results.md` and `results.json` to `out_dir` and adds their
    paths to `summary["files"]` (before the JSON is written, so it lists
    them too)."""
    files = summary["files"]
    files["results.md"] = os.path.join(out_dir, "results.md")
    files["results.json"] = os.path.join(out_dir, "results.json")
    _write_text(files["results.md"], summary["table"] + "\n")
    _write_text(
        files["results.json"], json.dumps(summary, indent=2, default=float)
    )


def _write_text(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.tmp"
    )
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)
