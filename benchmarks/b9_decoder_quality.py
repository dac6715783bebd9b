"""B9: the quality of a pruned decoder, on a real corpus available offline.

No pretrained language model can be downloaded here, so B9 trains its own:
a keras-hub `LlamaCausalLM` on the bytes of the Python standard library's
source (the `.py` files of `sysconfig.get_paths()["stdlib"]`, tests and
site-packages left out), split by file into training and validation
(a file's SHA-256 decides: about 5 % of the files validate). Tokens are
bytes (vocabulary 256), windows of `LENGTH + 1` bytes drawn at seeded
random offsets. Then, at each kept share of the parameters (the
feed-forward units go, `uniform_blocks=True`, the embedding / output head
and the attention protected, so every model stays a `LlamaCausalLM`), the
validation perplexity per byte of:

- `norm`: `prune_model(target=...)` ranking units by weight norm, no
  training after the cut;
- `calibration`: the same with `importance=calibration_scores(...)`
  (activation magnitude over 32 training windows), no training;
- `calibration+distill`: that model distilled from the original for
  `--tokens` target tokens (`keras_guided.distill.distill_causal_lm`);
- `guided+distill`: the original trained for the same tokens under
  `GuidedPruning(target=..., guidance=ScoreGuidance(calibration scores))`
  with the distillation loss from a frozen copy of the original
  (`keras_guided.Distiller`), its first three quarters with the penalty
  and the cut at the end of them, the last quarter distilling the cut
  model;
- `scratch`: a model of the pruned shape trained from random weights on
  the same number of tokens (the Minitron comparison).

Every cell is written to the JSON as it ends, and a cell already there is
not run again; the original is trained once and cached outside the
repository (`~/.cache/keras_guided_bench/b9/`).

    PYTHONPATH=. python -m benchmarks.b9_decoder_quality \\
        --base-tokens 2000000 --tokens 300000 --shares 0.75,0.5 \\
        --out docs/benchmarks_b9_decoder_quality.json --docs docs/benchmarks.md
"""

import argparse
import glob
import hashlib
import json
import math
import os
import sys
import sysconfig
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks import report  # noqa: E402
from benchmarks.report import param_count  # noqa: E402

LENGTH = 128
SHAPE = dict(
    vocabulary_size=256,
    num_layers=4,
    hidden_dim=192,
    num_query_heads=3,
    num_key_value_heads=1,
    intermediate_dim=768,
)
BATCH = 32
LR = 2e-3
VALIDATION_WINDOWS = 96
CALIBRATION_WINDOWS = 32
PROTECTED = ["token_embedding", "self_attention"]
DEFAULT_DIR = os.path.join(
    os.path.expanduser("~"), ".cache", "keras_guided_bench", "b9"
)
PLOT = "benchmarks_b9_decoder_quality.png"  # next to the page
BEGIN = "<!-- b9:begin -->"
END = "<!-- b9:end -->"
HEADING = "## B9: the quality of a pruned decoder"
METHODS = (
    "norm",
    "calibration",
    "calibration+distill",
    "guided+distill",
    "scratch",
)


def corpus_files(root=None):
    """`(train, validation)` lists of the standard library's `.py` files
    (sorted paths relative to `root`); a file validates when the first
    byte of the SHA-256 of its relative path is below 13 (about 5 %)."""
    root = root or sysconfig.get_paths()["stdlib"]
    files = sorted(
        os.path.relpath(path, root)
        for path in glob.glob(os.path.join(root, "**", "*.py"), recursive=True)
    )
    files = [
        f
        for f in files
        if "site-packages" not in f
        and not any(part.startswith("test") for part in f.split(os.sep))
    ]
    train, validation = [], []
    for name in files:
        digest = hashlib.sha256(name.encode()).digest()
        (validation if digest[0] < 13 else train).append(name)
    return root, train, validation


def read_bytes(root, names):
    chunks = []
    for name in names:
        with open(os.path.join(root, name), "rb") as f:
            chunks.append(f.read())
    return np.frombuffer(b"\n".join(chunks), dtype=np.uint8)


def windows(data, count, seed):
    """`count` windows of `LENGTH + 1` bytes at seeded random offsets."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(data) - LENGTH - 1, size=count)
    return np.stack([data[s : s + LENGTH + 1] for s in starts]).astype("int32")


def as_inputs(w):
    return {"token_ids": w[:, :-1], "padding_mask": np.ones_like(w[:, :-1])}


def build(shape=None, seed=0):
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.LlamaBackbone(**(shape or SHAPE))
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)


def perplexity(model, val):
    """Validation perplexity per byte: exp of the mean next-byte
    cross-entropy over the validation windows."""
    import keras

    total, count = 0.0, 0
    for start in range(0, len(val), BATCH):
        w = val[start : start + BATCH]
        logits = keras.ops.convert_to_numpy(model(as_inputs(w)))
        logits = logits.astype("float64")
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        target = w[:, 1:]
        total -= float(np.take_along_axis(logp, target[..., None], -1).sum())
        count += target.size
    return math.exp(total / count)


def _compile(model, steps, lr=LR):
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(
        lr / 10,
        max(1, steps),
        warmup_target=lr,
        warmup_steps=min(100, steps // 10),
    )
    model.compile(
        keras.optimizers.AdamW(schedule, weight_decay=0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )


def _progress(log, label, steps, every=100):
    """A callback that logs the step, the tokens so far and the loss every
    `every` steps."""
    import keras

    class Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if (batch + 1) % every == 0:
                log(
                    f"{label}: step {batch + 1}/{steps}, "
                    f"{(batch + 1) * BATCH * LENGTH:,} tokens, loss "
                    f"{(logs or {}).get('loss', float('nan')):.3f}"
                )

    return Progress()


def train(model, data, tokens, seed, log, label, callbacks=()):
    """Next-byte training for `tokens` target tokens on fresh windows."""
    steps = max(1, tokens // (BATCH * LENGTH))
    _compile(model, steps)
    w = windows(data, steps * BATCH, seed)
    start = time.perf_counter()
    history = model.fit(
        as_inputs(w),
        w[:, 1:],
        batch_size=BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[*callbacks, _progress(log, label, steps)],
    )
    seconds = time.perf_counter() - start
    log(
        f"{label}: {steps} steps, {steps * BATCH * LENGTH} tokens, loss "
        f"{history.history['loss'][-1]:.3f}, {seconds:.0f} s "
        f"({steps * BATCH * LENGTH / seconds:.0f} tokens/s)"
    )
    return seconds


def base_model(data, val, tokens, cache_dir, log):
    path = os.path.join(cache_dir, f"base_{tokens}.weights.h5")
    model = build()
    if os.path.exists(path):
        model.load_weights(path)
        log(f"base: loaded {path}")
        return model, None
    seconds = train(model, data, tokens, 1, log, "base")
    os.makedirs(cache_dir, exist_ok=True)
    temporary = path[: -len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(temporary)
    os.replace(temporary, path)
    return model, seconds


def prune(model, share, importance=None):
    import keras_guided

    return keras_guided.prune_model(
        model,
        target={"params": share},
        uniform_blocks=True,
        protected=PROTECTED,
        on_unsupported="keep",
        importance=importance,
    )


def cell(method, share, base, scores, data, val, tokens, log):
    """`(model, extra info)` of one method at one share."""
    import keras

    import keras_guided

    label = f"{method} @ {share}"
    if method == "norm":
        return prune(base, share), {}
    if method == "calibration":
        return prune(base, share, scores), {}
    if method == "calibration+distill":
        student = prune(base, share, scores)
        report = keras_guided.distill.distill_causal_lm(
            student,
            base,
            as_inputs(windows(data, tokens // LENGTH + BATCH, 3)),
            tokens=tokens,
            optimizer=keras.optimizers.AdamW(LR / 2, weight_decay=0.01),
            batch_size=BATCH,
            verbose=0,
        )
        log(
            f"{label}: distilled {report.tokens} tokens in "
            f"{report.seconds:.0f} s"
        )
        return student, {"seconds": report.seconds}
    if method == "guided+distill":
        student = build()
        student.set_weights(base.get_weights())
        teacher = base
        teacher.trainable = False
        penalty_tokens = tokens * 3 // 4
        steps = max(1, penalty_tokens // (BATCH * LENGTH))
        pruning = keras_guided.GuidedPruning(
            target={"params": share},
            guidance=keras_guided.ScoreGuidance(scores),
            uniform_blocks=True,
            protected=PROTECTED,
            on_unsupported="keep",
        )
        distiller = keras_guided.Distiller(
            student, teacher, alpha=0.1, temperature=2.0
        )
        _compile(distiller, steps, LR / 2)
        # Six short epochs of fresh windows: the path to the budget takes
        # the first four (GuidedPruning's default), the last two hold it.
        epochs = 6
        w = windows(data, steps * BATCH, 4)

        def batches():
            while True:
                for i in range(0, len(w) - BATCH + 1, BATCH):
                    batch = w[i : i + BATCH]
                    yield as_inputs(batch), batch[:, 1:]

        start = time.perf_counter()
        distiller.fit(
            batches(),
            steps_per_epoch=max(1, steps // epochs),
            epochs=epochs,
            verbose=0,
            callbacks=[pruning],
        )
        teacher.trainable = True
        small = prune(student, share)
        log(
            f"{label}: penalty phase {time.perf_counter() - start:.0f} s, cut "
            f"to {param_count(small) / param_count(base):.3f} of the parameters"
        )
        after_cut = perplexity(small, val)
        report = keras_guided.distill.distill_causal_lm(
            small,
            base,
            as_inputs(
                windows(data, (tokens - penalty_tokens) // LENGTH + BATCH, 5)
            ),
            tokens=tokens - penalty_tokens,
            optimizer=keras.optimizers.AdamW(LR / 4, weight_decay=0.01),
            batch_size=BATCH,
            verbose=0,
        )
        return small, {"after_cut_ppl": after_cut}
    if method == "scratch":
        shape = dict(SHAPE)
        reference = prune(base, share)
        shape["intermediate_dim"] = reference.backbone.get_config()[
            "intermediate_dim"
        ]
        model = build(shape, seed=7)
        train(model, data, tokens, 6, log, label)
        return model, {}
    raise ValueError(f"unknown method {method!r}")


def run(args, log=print):
    import keras_guided

    result = {"cells": []}
    if args.out and os.path.exists(args.out):
        with open(args.out) as f:
            result = json.load(f)
    root, train_files, val_files = corpus_files()
    data = read_bytes(root, train_files)
    val = windows(read_bytes(root, val_files), VALIDATION_WINDOWS, 2)
    result.update(
        corpus={
            "root": "stdlib (sysconfig)",
            "train_files": len(train_files),
            "validation_files": len(val_files),
            "train_bytes": int(len(data)),
        },
        shape=SHAPE,
        length=LENGTH,
        batch=BATCH,
        base_tokens=args.base_tokens,
        tokens=args.tokens,
    )
    base, seconds = base_model(data, val, args.base_tokens, args.cache_dir, log)
    result.setdefault("base", {})
    result["base"].update(params=param_count(base), ppl=perplexity(base, val))
    if seconds is not None:
        result["base"]["seconds"] = round(seconds, 1)
    log(
        f"base: {param_count(base)} parameters, validation ppl "
        f"{result['base']['ppl']:.3f}"
    )
    scores = keras_guided.scoring.calibration_scores(
        base,
        as_inputs(windows(data, CALIBRATION_WINDOWS, 8)),
        on_unsupported="keep",
        batch_size=BATCH,
        verbose=0,
    )
    done = {
        (c["method"], c["share"], c["tokens_budget"]) for c in result["cells"]
    }
    for share in args.shares:
        for method in args.methods:
            if (method, share, args.tokens) in done:
                continue
            start = time.perf_counter()
            model, info = cell(
                method, share, base, scores, data, val, args.tokens, log
            )
            row = {
                "method": method,
                "share": share,
                "tokens": 0
                if method in ("norm", "calibration")
                else args.tokens,
                "params": param_count(model),
                "kept": round(param_count(model) / param_count(base), 4),
                "class": type(model).__name__,
                "ppl": perplexity(model, val),
                "seconds": round(time.perf_counter() - start, 1),
                **info,
            }
            row["tokens_budget"] = args.tokens
            result["cells"].append(row)
            log(
                f"{method} @ {share}: ppl {row['ppl']:.3f} "
                f"({row['kept']:.3f} kept)"
            )
            _save(args, result)
    return result


def _save(args, result):

    if args.out:
        report.write_atomic(args.out, json.dumps(result, indent=1) + "\n")


def table(result):
    """One row per kept share and token budget; each cell the validation
    perplexity, its ratio to the original's and the share of the
    parameters kept."""
    base = result["base"]
    lines = [
        "| kept share asked | tokens for the training methods | "
        + " | ".join(f"`{m}`" for m in METHODS)
        + " |",
        "|---" * (len(METHODS) + 2) + "|",
    ]
    keys = sorted(
        {(c["share"], c["tokens_budget"]) for c in result["cells"]},
        key=lambda k: (-k[0], k[1]),
    )
    for share, budget in keys:
        cells = []
        for method in METHODS:
            row = next(
                (
                    c
                    for c in result["cells"]
                    if c["method"] == method
                    and c["share"] == share
                    and c["tokens_budget"] == budget
                ),
                None,
            )
            if row is None:
                cells.append("not run")
                continue
            text = (
                f"{row['ppl']:.3f} ({row['ppl'] / base['ppl']:.2f}x; "
                f"{row['kept']:.3f} kept)"
            )
            if "after_cut_ppl" in row:
                text += f", {row['after_cut_ppl']:.3f} right after the cut"
            cells.append(text)
        share_of_base = budget / result["base_tokens"]
        lines.append(
            f"| {share} | {budget:,} ({share_of_base:.1%} of the original's)"
            " | " + " | ".join(cells) + " |"
        )
    lines.append(
        f"| original ({base['params'] / 1e6:.2f} M) | "
        f"{result['base_tokens']:,} | {base['ppl']:.3f} |"
        + " |"
        * (len(METHODS) - 1)
    )
    return "\n".join(lines) + "\n"


def plot(result, path):
    """Validation perplexity over the original's against the share of the
    parameters kept, one line per method (log scale: `scratch` is far
    above), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = result["base"]["ppl"]
    figure, axis = plt.subplots(figsize=(6, 4))
    for index, method in enumerate(METHODS):
        points = sorted(
            (c["kept"], c["ppl"] / base)
            for c in result["cells"]
            if c["method"] == method and c["tokens_budget"] == result["tokens"]
        )
        if points:
            x, y = zip(*points)
            axis.plot(x, y, "o-", color=f"C{index}", label=method)
    axis.axhline(1.0, color="gray", linestyle=":", label="original")
    axis.set_yscale("log")
    axis.set_xlabel("share of the parameters kept")
    axis.set_ylabel("validation perplexity / original's")
    axis.set_title(
        f"B9: pruned decoder, {result['tokens']:,} tokens for the "
        "training methods",
        fontsize=10,
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, ".b9_plot.tmp.png")
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def section(result, command):
    shape = result["shape"]
    corpus = result["corpus"]
    text = (
        "`benchmarks/b9_decoder_quality.py` trains a keras-hub "
        f"`LlamaCausalLM` ({shape['num_layers']} layers, hidden "
        f"{shape['hidden_dim']}, {shape['num_query_heads']}/"
        f"{shape['num_key_value_heads']} heads, FFN "
        f"{shape['intermediate_dim']}, bytes as tokens) for "
        f"{result['base_tokens']:,} tokens on the Python standard library's "
        f"source ({corpus['train_files']} files, "
        f"{corpus['train_bytes'] / 1e6:.1f} MB; "
        f"{corpus['validation_files']} other files validate), then prunes "
        "its feed-forward units to each kept share of the parameters (every "
        "model stays a `LlamaCausalLM`). Cells: validation perplexity per byte"
        " (lower is better) and, in brackets, its ratio to the original's "
        "and the share of the parameters kept. Methods that train get the "
        "row's number of target tokens each:"
        " `calibration+distill` distils the calibration-pruned model from the "
        "original; `guided+distill` trains the original under `GuidedPruning` "
        "with calibration guidance and the distillation loss for three "
        "quarters of them, cuts, and distils the cut model for the last "
        "quarter; `scratch` trains the pruned shape from random weights. One "
        "seed, a small model and a short budget: read the order of the "
        "methods, not the decimals."
    )
    if result.get("conditions"):
        text += " " + result["conditions"]
    return (
        f"{HEADING}\n\n{textwrap.fill(text, 76)}\n\n"
        f"```bash\n{command}\n```\n\n{BEGIN}\n{table(result)}{END}\n\n"
        f"![B9: perplexity against the kept share]({PLOT})\n"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-tokens", type=int, default=2_000_000)
    parser.add_argument("--tokens", type=int, default=300_000)
    parser.add_argument("--shares", default="0.75,0.5")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--cache-dir", default=DEFAULT_DIR)
    parser.add_argument("--out", default=None)
    parser.add_argument("--docs", default=None)
    parser.add_argument("--conditions", default="")
    args = parser.parse_args(argv)
    args.shares = [float(s) for s in args.shares.split(",")]
    args.methods = args.methods.split(",")

    log = report.clock_log

    result = run(args, log)
    command = report.command_line("benchmarks.b9_decoder_quality", argv)
    result["command"] = command
    result["conditions"] = args.conditions
    result["machine"] = report.machine()
    _save(args, result)
    if args.docs:
        plot(result, os.path.join(os.path.dirname(args.docs), PLOT))
        report.write_region(
            args.docs, BEGIN, END, table(result), section(result, command)
        )
    print(table(result))


if __name__ == "__main__":
    sys.exit(main())
