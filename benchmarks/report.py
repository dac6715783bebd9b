"""Markdown tables, the accuracy-vs-params plot and docs/benchmarks.md."""

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine():
    """nproc, CPU model, Python and package versions, git commit."""
    cpu = cpu_model()
    versions = {}
    for package in (
        "keras",
        "tensorflow",
        "numpy",
        "ai-edge-litert",
        "tensorflow-model-optimization",
        "tf-keras",
        "scikit-learn",
    ):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=os.path.dirname(os.path.abspath(__file__)),
            ).stdout.strip()
            or None
        )
    except OSError:
        commit = None
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": commit,
    }


def write_atomic(path, content, mode="w"):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as f:
            f.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def command_line(module, argv=None, prefix="PYTHONPATH=. python -m"):
    """The command that reproduces this run, arguments quoted for a shell
    (`argv` None: this process's own)."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join([prefix, module, *(shlex.quote(a) for a in args)])


def clock_log(message):
    """Print `message` after the wall-clock time, at once."""
    print(time.strftime("%H:%M:%S"), message, flush=True)


def elapsed_log(start, width=7):
    """A `log(message)` that prints the seconds since `start`
    (`time.perf_counter()`) before each message, at once."""

    def log(message):
        seconds = time.perf_counter() - start
        print(f"[{seconds:{width}.1f}s] {message}", flush=True)

    return log


def variable_size(variable):
    """How many numbers a variable holds (the product of its shape)."""
    count = 1
    for dim in variable.shape:
        count *= int(dim)
    return count


def param_count(model):
    """How many numbers `model.weights` hold, trainable or not."""
    return sum(variable_size(v) for v in model.weights)


def replace_region(text, begin, end, body, section=None):
    """`text` with what lies between the markers `begin` and `end` replaced
    by `body`; where the markers are missing, `section` (the whole section,
    markers included) is appended, or a `ValueError` says so when there is
    none."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        if section is None:
            raise ValueError(
                f"The page has no region between {begin!r} and {end!r}."
            )
        return text.rstrip("\n") + "\n\n" + section
    return text[: start + len(begin)] + "\n" + body + text[stop:]


def write_region(path, begin, end, body, section=None):
    """Rewrites the region of the page at `path` (`replace_region`),
    atomically; a missing page starts empty."""
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    write_atomic(path, replace_region(text, begin, end, body, section))


def _pct(value):
    return "" if value is None else f"{100 * value:.2f}"


def _num(value, digits=3):
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def b2_table(b2):
    fastest = b2.get("fastest_seconds", b2["median_seconds"])
    lines = [
        "| variant | fastest epoch s | median epoch s | ratio vs plain | aim |",
        "|---|---|---|---|---|",
        f"| plain fit | {fastest['plain']:.3f} | "
        f"{b2['median_seconds']['plain']:.3f} | 1 | |",
    ]
    for name, ratio in b2["ratios"].items():
        aim, verdict = b2["aims"].get(name), ""
        if isinstance(aim, (list, tuple)):
            other, margin = aim
            if other in b2["ratios"]:
                limit = b2["ratios"][other] + margin
                reached = "reached" if ratio <= limit else "not reached"
                verdict = f"<= {other} + {margin} = {limit:.3f} ({reached})"
        elif aim is not None:
            verdict = (
                f"<= {aim} ({'reached' if ratio <= aim else 'not reached'})"
            )
        lines.append(
            f"| {name} | {fastest[name]:.3f} | "
            f"{b2['median_seconds'][name]:.3f} | {ratio:.3f} | "
            f"{verdict} |"
        )
    for name, reason in b2["skipped"].items():
        lines.append(f"| {name} | skipped: {reason} | | | |")
    return lines + [""]


def b3_table(b3):
    lines = [
        "| model | input | params | FLOPs | groups s | rewrite s | "
        "verify max diff | params ratio | FLOPs ratio | latency ms "
        "(orig -> pruned) | latency ratio | latency / FLOPs ratio | "
        "unstructured zeros: latency ratio, gz bytes vs orig |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in b3["models"]:
        if "error" in r:
            lines.append(
                f"| {r['model']} | {r['input_size']} | failed: "
                f"{r['error']} |" + " |" * 10
            )
            continue
        pruned = "prune_skipped" not in r
        lines.append(
            f"| {r['model']} | {r['input_size']} | {r['params']:,} | "
            f"{r['flops']:,} | {_num(r.get('groups_seconds'))} | "
            + (
                f"{_num(r['rewrite_seconds'])} | "
                f"{_num(r['verification_max_abs_diff'], 2)} (output "
                f"scale {_num(r['output_scale'], 2)}) | "
                f"{r['params_ratio']:.3f} | {r['flops_ratio']:.3f} | "
                f"{r['original_latency_ms']:.3g} -> "
                f"{r['pruned_latency_ms']:.3g} | {r['latency_ratio']:.3f} | "
                f"{r['latency_over_flops_ratio']:.3f} | "
                if pruned
                else f"skipped: {r['prune_skipped']} | | | | "
                f"{r['original_latency_ms']:.3g} | | | "
            )
            + f"{r['unstructured_latency_ratio']:.3f}, "
            f"{r['unstructured_tflite_gzip_bytes']:,} vs "
            f"{r['original_tflite_gzip_bytes']:,} |"
        )
    resnet = [
        r
        for r in b3["models"]
        if r["model"] == "ResNet50" and "rewrite_seconds" in r
    ]
    if resnet:
        seconds = resnet[0]["rewrite_seconds"]
        lines.append(
            f"- ResNet50 rewrite <= 5 s: {seconds:.2f} s, "
            f"{'reached' if seconds <= 5 else 'not reached'}."
        )
    for r in b3["models"]:
        if "latency_over_flops_ratio" in r:
            value = r["latency_over_flops_ratio"]
            lines.append(
                f"- {r['model']} latency ratio <= 1.15 x FLOPs ratio: "
                f"{value:.2f} x, "
                f"{'reached' if value <= 1.15 else 'not reached'}."
            )
    return lines + [""]


def markdown(results, command, quick, plot_name=None):
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = ["# Benchmarks", ""]
    if quick:
        lines += [
            "> **Quick run (`--quick`)**: smaller grids, 1 seed, few "
            "epochs, small inputs. Numbers show the harness works; "
            "they are not the full results.",
            "",
        ]
    lines += [
        "Generated by `python -m benchmarks` (see `benchmarks/README.md`). "
        "Every raw number is in the JSON next to the markdown table in the "
        "output directory.",
        "",
        "Command:",
        "",
        "```bash",
        command,
        "```",
        "",
        *(
            [f"({results['regenerated']}.)", ""]
            if results.get("regenerated")
            else []
        ),
        f"Machine: {m['nproc']} CPU(s), {m['cpu']}, Python {m['python']}, "
        f"{m['platform']}; {versions}; git {m['git_commit']}. Wall time "
        f"{results['seconds'] / 60:.1f} min.",
        "",
        f"Data: {results['data']['name']}, split "
        f"{results['data']['split']} (train/val/test, seed "
        f"{results['data']['seed']}); choices on validation, test reported "
        "once.",
        "",
    ]
    if "b1" in results:
        lines += b1_section(results["b1"], plot_name).rstrip("\n").split(
            "\n"
        ) + [""]
    if "b2" in results:
        b2 = results["b2"]
        lines += [
            "## B2: training overhead",
            "",
            f"LeNet-300-100, "
            f"{b2.get('samples_per_epoch', b2['train_samples'])} "
            f"samples per epoch, batch "
            f"{b2['config']['batch_size']}, {b2['config']['rounds']} "
            "interleaved epochs per variant after one discarded "
            "(compilation) epoch; ratios of "
            f"{b2.get('ratio_of', 'median epochs')}.",
            "",
        ]
        lines += b2_table(b2)
    if "b3" in results:
        b3 = results["b3"]
        lines += [
            "## B3: surgery and on-device speed",
            "",
            f"keras.applications, `weights=None`, "
            f"{int(100 * b3['remove_fraction'])} % of prunable units "
            "removed (lowest group norm), float32 LiteRT, "
            f"{b3['config']['num_threads']} thread(s), median of "
            f"{b3['config']['latency_runs']} runs. Aims: ResNet50 "
            "rewrite <= 5 s, latency ratio <= 1.15 x FLOPs ratio.",
            "",
        ]
        lines += b3_table(b3)
    return "\n".join(lines) + "\n"


def b1_section(b1, plot_name=None):
    """The B1 section of the benchmarks page, as markdown text."""
    from benchmarks import b1_budget

    config = b1.get("config", {})
    lines = [
        "## B1: accuracy at matched budgets",
        "",
        "Every method starts from the same trained unregularized reference "
        "(per seed), gets the same pruning epochs to reach the budget, and "
        "the same fine-tuning: distillation from the reference "
        "(`keras_guided.Distiller`, alpha 0.1, temperature 4, cosine "
        "learning rate), the number of epochs kept (0 to all) chosen on "
        "validation. Test accuracy is read once, at the end. Epochs "
        f"(reference / pruning / fine-tuning): MLP "
        f"{_epochs(config.get('mlp'))}, CNNs {_epochs(config.get('cnn'))}; "
        f"Adam 1e-3, batch {b1_budget.BATCH_SIZE}. Raw numbers: "
        "`benchmarks_b1.json` next to this page.",
        "",
        "| method | what |",
        "|---|---|",
    ]
    present = {
        key.split("|")[0]
        for entry in b1.get("models", {}).values()
        for key in entry.get("points", {})
    }
    for method in b1_budget.METHODS:
        text = b1_budget.DESCRIPTIONS.get(method)
        if method in present:
            lines.append(f"| `{method}` | {text} |")
    lines.append("")
    lines += b1_budget.markdown(b1)
    lines += ["### Targets", ""] + b1_budget.targets(b1) + [""]
    if plot_name:
        lines += [f"![accuracy vs FLOPs]({plot_name})", ""]
    return "\n".join(lines) + "\n"


def _epochs(config):
    if not config:
        return "?"
    return (
        f"{config['ref_epochs']} / {config['prune_epochs']} / "
        f"{config['finetune_epochs']}"
    )


def plot_b1(b1, path):
    """Test accuracy against kept FLOPs (B1), written atomically."""
    from benchmarks import b1_budget

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    b1_budget.plot(b1, path)
    os.chmod(path, 0o644)
