"""Markdown tables, the accuracy-vs-params plot and docs/benchmarks.md."""

import importlib.metadata
import os
import platform
import subprocess
import tempfile


def machine():
    """nproc, CPU model, Python and package versions, git commit."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for package in ("keras", "tensorflow", "numpy", "ai-edge-litert",
                    "tensorflow-model-optimization", "tf-keras",
                    "scikit-learn"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True,
            text=True, cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip() or None
    except OSError:
        commit = None
    return {"nproc": os.cpu_count(), "cpu": cpu,
            "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions,
            "git_commit": commit}


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


def _pct(value):
    return "" if value is None else f"{100 * value:.2f}"


def _num(value, digits=3):
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def b1_tables(b1):
    lines = []
    names = {"lenet300": "LeNet-300-100 (784-300-100-10)",
             "lenet5": "LeNet-5-style CNN (conv20-pool-conv50-pool-500-10)",
             "lenet5_bn": "LeNet-5-style CNN with BatchNormalization"}
    for model_name, block in b1["models"].items():
        ref = block["reference"]
        lines += [
            f"### {names.get(model_name, model_name)}", "",
            f"Unregularized reference: {ref['units']} hidden units, "
            f"{ref['params']:,} params, {ref['flops']:,} FLOPs, validation "
            f"{_pct(ref['val'])} %, test {_pct(ref['test_mean'])} % (mean "
            f"of {len(ref['test_per_seed'])} seed(s)).", "",
            "| method | setting | units kept | params | FLOPs | test trained"
            " | test after removal (masked) | test fine-tuned (mean ± std) |"
            " within 0.5 on val | .tflite bytes | gzipped | latency ms |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for method, h in block["headlines"].items():
            if "skipped" in h:
                lines.append(f"| {method} | skipped: {h['skipped']} |"
                             + " |" * 10)
                continue
            if method == "tfmot":
                lines.append(
                    f"| tfmot (unstructured, sparsity "
                    f"{h['achieved_sparsity']:.3f}, matched to "
                    f"{h['matched_method']}) | {h['finetune_epochs']} "
                    f"pruning epochs | all | {h['params']:,} "
                    f"({h['params_nonzero']:,} nonzero) | unchanged | | | "
                    f"{_pct(h['test_mean'])} | | {h['tflite_bytes']:,} | "
                    f"{h['tflite_gzip_bytes']:,} | {h['latency_ms']:.3g} |")
                continue
            setting = (f"keep {h['keep_fraction']}" if method ==
                       "unregularized" else f"strength {h['strength']:g}, "
                       f"threshold {h['threshold']:g}")
            std = f" ± {_pct(h['test_std'])}" if len(
                h["test_per_seed"]) > 1 else ""
            lines.append(
                f"| {method} | {setting} | {h['units_kept']}/"
                f"{h['units_total']} {tuple(h['widths'])} | {h['params']:,}"
                f" ({h['params_dense'] / h['params']:.1f}x) | "
                f"{h['flops']:,} ({h['flops_dense'] / h['flops']:.1f}x) | "
                f"{_pct(h['accuracy_trained_test'])} | "
                f"{_pct(h['accuracy_removed_test'])} "
                f"({_pct(h['accuracy_masked_test'])}) | "
                f"{_pct(h['test_mean'])}{std} | "
                f"{'yes' if h['within_tolerance_on_val'] else 'no'} | "
                f"{h['tflite_bytes']:,} | {h['tflite_gzip_bytes']:,} | "
                f"{h['latency_ms']:.3g} |")
        lines.append("")
    if b1["skipped"]:
        lines += ["Skipped methods:", ""]
        lines += [f"- `{m}`: {r}" for m, r in b1["skipped"].items()]
        lines.append("")
    return lines


def b1_targets(b1):
    """Checks the issue's targets; returns markdown lines."""
    lines = ["### Targets", ""]

    def guided(block):
        return {m: h for m, h in block["headlines"].items()
                if m.startswith("guided") and "skipped" not in h}

    mlp = b1["models"].get("lenet300")
    if mlp:
        ref = mlp["reference"]["test_mean"]
        ok = [(h["units_kept"], m) for m, h in guided(mlp).items()
              if h["test_mean"] >= ref - 0.005]
        best = min(ok) if ok else None
        lines.append(
            "- LeNet-300-100 at <= 66 of 400 hidden units within 0.5 points "
            "(test, mean over seeds): "
            + (f"best guided within tolerance: {best[0]} units ({best[1]}):"
               f" {'reached' if best[0] <= 66 else 'not reached'}"
               if best else "no guided headline within 0.5 points on test: "
               "not reached"))
        group = mlp["headlines"].get("group_lasso")
        g = guided(mlp)
        if group and g and "skipped" not in group:
            units, method = min((h["units_kept"], m) for m, h in g.items())
            fewer = 1 - units / group["units_kept"]
            lines.append(
                f"- guided >= 25 % fewer units than uniform group lasso "
                f"(both headlines chosen within 0.5 points on validation): "
                f"{method} {units} vs group_lasso {group['units_kept']} "
                f"({100 * fewer:.0f} % fewer; test {_pct(g[method]['test_mean'])}"
                f" vs {_pct(group['test_mean'])}): "
                f"{'reached' if fewer >= 0.25 else 'not reached'}")
    for name in ("lenet5", "lenet5_bn"):
        cnn = b1["models"].get(name)
        if not cnn:
            continue
        ref = cnn["reference"]["test_mean"]
        ok = [(h["flops_dense"] / h["flops"], m) for m, h in
              cnn["headlines"].items()
              if "skipped" not in h and m != "tfmot"
              and h["test_mean"] >= ref - 0.005]
        best = max(ok) if ok else None
        lines.append(
            f"- {name}: >= 10x fewer FLOPs within 0.5 points (test): "
            + (f"best {best[0]:.1f}x ({best[1]}): "
               f"{'reached' if best[0] >= 10 else 'not reached'}"
               if best else "no method within 0.5 points: not reached"))
    diffs, equal = [], True
    for block in b1["models"].values():
        for p in block["points"]:
            diffs.append(p.get("prune_model_max_abs_diff",
                               p["reference_max_abs_diff"]))
            equal &= (p["accuracy_removed"] == p["accuracy_masked"])
    removal = {p["removal"] for b in b1["models"].values()
               for p in b["points"]}
    lines.append(
        f"- accuracy right after removal equals the masked model's: "
        f"{'yes' if equal else 'no'} on every point (max |logit "
        f"difference| {max(diffs):.2g}; removal by {', '.join(removal)})")
    lines.append("")
    return lines


def b2_table(b2):
    lines = ["| variant | median epoch s | ratio vs plain | aim |",
             "|---|---|---|---|",
             f"| plain fit | {b2['median_seconds']['plain']:.3f} | 1 | |"]
    for name, ratio in b2["ratios"].items():
        aim = b2["aims"].get(name)
        verdict = "reached" if ratio <= aim else "not reached"
        lines.append(f"| {name} | {b2['median_seconds'][name]:.3f} | "
                     f"{ratio:.3f} | <= {aim} ({verdict}) |")
    for name, reason in b2["skipped"].items():
        lines.append(f"| {name} | skipped: {reason} | | |")
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
            lines.append(f"| {r['model']} | {r['input_size']} | failed: "
                         f"{r['error']} |" + " |" * 10)
            continue
        pruned = "prune_skipped" not in r
        lines.append(
            f"| {r['model']} | {r['input_size']} | {r['params']:,} | "
            f"{r['flops']:,} | {_num(r.get('groups_seconds'))} | "
            + (f"{_num(r['rewrite_seconds'])} | "
               f"{_num(r['verification_max_abs_diff'], 2)} (output "
               f"scale {_num(r['output_scale'], 2)}) | "
               f"{r['params_ratio']:.3f} | {r['flops_ratio']:.3f} | "
               f"{r['original_latency_ms']:.3g} -> "
               f"{r['pruned_latency_ms']:.3g} | {r['latency_ratio']:.3f} | "
               f"{r['latency_over_flops_ratio']:.3f} | "
               if pruned else
               f"skipped: {r['prune_skipped']} | | | | "
               f"{r['original_latency_ms']:.3g} | | | ")
            + f"{r['unstructured_latency_ratio']:.3f}, "
            f"{r['unstructured_tflite_gzip_bytes']:,} vs "
            f"{r['original_tflite_gzip_bytes']:,} |")
    resnet = [r for r in b3["models"] if r["model"] == "ResNet50"
              and "rewrite_seconds" in r]
    if resnet:
        seconds = resnet[0]["rewrite_seconds"]
        lines.append(f"- ResNet50 rewrite <= 5 s: {seconds:.2f} s, "
                     f"{'reached' if seconds <= 5 else 'not reached'}.")
    for r in b3["models"]:
        if "latency_over_flops_ratio" in r:
            value = r["latency_over_flops_ratio"]
            lines.append(
                f"- {r['model']} latency ratio <= 1.15 x FLOPs ratio: "
                f"{value:.2f} x, "
                f"{'reached' if value <= 1.15 else 'not reached'}.")
    return lines + [""]


def markdown(results, command, quick, plot_name=None):
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = ["# Benchmarks", ""]
    if quick:
        lines += ["> **Quick run (`--quick`)**: smaller grids, 1 seed, few "
                  "epochs, small inputs. Numbers show the harness works; "
                  "they are not the full results.", ""]
    lines += [
        "Generated by `python -m benchmarks` (see `benchmarks/README.md`). "
        "Every raw number is in the JSON next to the markdown table in the "
        "output directory.", "",
        "Command:", "", "```bash", command, "```", "",
        *([f"({results['regenerated']}.)", ""]
          if results.get("regenerated") else []),
        f"Machine: {m['nproc']} CPU(s), {m['cpu']}, Python {m['python']}, "
        f"{m['platform']}; {versions}; git {m['git_commit']}. Wall time "
        f"{results['seconds'] / 60:.1f} min.", "",
        f"Data: {results['data']['name']}, split "
        f"{results['data']['split']} (train/val/test, seed "
        f"{results['data']['seed']}); choices on validation, test reported "
        "once.", "",
    ]
    if "b1" in results:
        lines += ["## B1: compression at equal accuracy", "",
                  "Headline per method: the smallest model (seed 0) whose "
                  "fine-tuned validation accuracy is within 0.5 points of "
                  "the unregularized reference; its strength is rerun for "
                  "every seed and test is reported as mean ± std. Latency: "
                  "float32 .tflite, LiteRT interpreter, 1 thread, batch 1, "
                  "median.", ""]
        lines += b1_tables(results["b1"]) + b1_targets(results["b1"])
        if plot_name:
            lines += [f"![accuracy vs params]({plot_name})", ""]
    if "b2" in results:
        b2 = results["b2"]
        lines += ["## B2: training overhead", "",
                  f"LeNet-300-100, {b2['train_samples']} samples, batch "
                  f"{b2['config']['batch_size']}, {b2['config']['rounds']} "
                  "interleaved epochs per variant after one discarded "
                  "(compilation) epoch; ratios of medians.", ""]
        lines += b2_table(b2)
    if "b3" in results:
        b3 = results["b3"]
        lines += ["## B3: surgery and on-device speed", "",
                  f"keras.applications, `weights=None`, "
                  f"{int(100 * b3['remove_fraction'])} % of prunable units "
                  "removed (lowest group norm), float32 LiteRT, "
                  f"{b3['config']['num_threads']} thread(s), median of "
                  f"{b3['config']['latency_runs']} runs. Aims: ResNet50 "
                  "rewrite <= 5 s, latency ratio <= 1.15 x FLOPs ratio.", ""]
        lines += b3_table(b3)
    return "\n".join(lines) + "\n"


def plot(b1, path):
    """Accuracy (fine-tuned, test) against params, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(b1["models"])
    figure, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4),
                                squeeze=False)
    for axis, model_name in zip(axes[0], models):
        block = b1["models"][model_name]
        methods = dict.fromkeys(p["method"] for p in block["points"])
        for method in methods:
            points = sorted((p["params"], 100 * p["accuracy_finetuned"]
                             ["test"]) for p in block["points"]
                            if p["method"] == method and p["seed"] == 0)
            axis.plot(*zip(*points), marker="o", label=method)
        tfmot = block["headlines"].get("tfmot", {})
        if "params_nonzero" in tfmot:
            axis.plot([tfmot["params_nonzero"]], [100 * tfmot["test_mean"]],
                      marker="x", linestyle="", color="k",
                      label="tfmot (nonzero)")
        ref = block["reference"]["test_mean"] * 100
        axis.axhline(ref - 0.5, color="grey", linestyle=":",
                     label="reference - 0.5")
        axis.set_xscale("log")
        axis.set_xlabel("params after removal")
        axis.set_ylabel("test accuracy (%)")
        axis.set_title(model_name)
        axis.set_ylim(max(0, ref - 15), 100)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".png")
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=100)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        if os.path.exists(temporary):
            os.remove(temporary)
