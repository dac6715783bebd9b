"""B6 references: CIFAR-10 ResNets trained to a strong accuracy, resumable.

A pruning comparison means little from an undertrained network: with cheap
recovery, any cut looks fine. B6 starts every method from a reference
trained with a standard CIFAR recipe on all 45,000 training images:

- SGD, momentum 0.9, Nesterov, batch 128;
- learning rate: linear warm-up for `warmup` epochs to `lr`, then cosine
  to 0 (Keras' `CosineDecay` with `warmup_target`);
- weight decay 5e-3 *decoupled* (Keras' SGD shrinks by `lr * wd` per step),
  which equals PyTorch's coupled 5e-4 under momentum 0.9 at steady state
  (`lr * 5e-4 / (1 - 0.9)`): the strength standard CIFAR recipes use;
- label smoothing 0.1; pad-4 crop and flip augmentation
  (`benchmarks/cifar.py`).

After every epoch the whole model (weights and optimizer state) is saved
atomically in the references' folder (`benchmarks/b6_references/` by
default, committed: a reference takes longer than one sitting here, and
the repository is what outlives a machine), and the curve (train loss and
accuracy, validation accuracy, seconds) is written to a JSON file, so a
killed run resumes at the next epoch and ends with the same weights as
an uninterrupted one would, batch for batch. The test images are read once,
at the end. A process training a reference holds its lock file, so a
second one started for the same reference leaves it alone.

    python -m benchmarks.b6_reference --cifar-dir ../shared/data/cifar10-jpeg \\
        --seed 0 --epochs 40 \\
        --curve docs/benchmarks_b6_curves/resnet20_seed0.json \\
        --json docs/benchmarks_b6.json
"""

import argparse
import hashlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_guided as kg  # noqa: E402
from benchmarks import b6_protocol as protocol  # noqa: E402
from benchmarks import b6_results as results_file  # noqa: E402
from benchmarks import cifar  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import resnet_cifar  # noqa: E402

BATCH_SIZE = 128
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-3  # decoupled; = PyTorch's coupled 5e-4 at momentum 0.9
LABEL_SMOOTHING = 0.1
STREAM_REFERENCE = 11  # B6's reference batches differ from B4's
DEFAULT_DIR = protocol.REFERENCE_DIR
EVAL_BATCH = 1000


def recipe(epochs, lr, warmup):
    return {
        "epochs": epochs,
        "lr": lr,
        "warmup_epochs": warmup,
        "batch_size": BATCH_SIZE,
        "momentum": MOMENTUM,
        "nesterov": True,
        "weight_decay": WEIGHT_DECAY,
        "weight_decay_kind": "decoupled (Keras SGD: w -= lr * wd * w)",
        "label_smoothing": LABEL_SMOOTHING,
        "train_images": 45000,
        "augmentation": "pad-4 random crop, horizontal flip",
    }


def optimizer(lr, warmup_steps, total_steps):
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr / 10,
        decay_steps=max(1, total_steps - warmup_steps),
        warmup_target=lr,
        warmup_steps=warmup_steps,
        alpha=0.0,
    )
    return keras.optimizers.SGD(
        schedule,
        momentum=MOMENTUM,
        nesterov=True,
        weight_decay=WEIGHT_DECAY,
    )


def loss():
    return keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=LABEL_SMOOTHING
    )


def one_hot_batches(data, seed, stream, epoch):
    for x, y in cifar.epoch_batches(
        data, seed, stream, epoch, None, BATCH_SIZE
    ):
        yield x, np.eye(10, dtype="float32")[y]


def accuracy(model, x, y):
    hits = 0
    for start in range(0, len(x), EVAL_BATCH):
        batch = cifar.normalize(x[start : start + EVAL_BATCH])
        out = keras.ops.convert_to_numpy(model(batch, training=False))
        hits += int(np.sum(np.argmax(out, -1) == y[start : start + EVAL_BATCH]))
    return hits / len(x)


def weights_id(path):
    """The first 16 hex digits of the SHA-256 of a reference's weights
    file: which training of a seed's reference a cell started from (a
    retrained reference differs, because training is not bitwise
    reproducible across machines)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def own_curve(curve):
    """`curve`, or, when that file holds a finished training's curve (a
    seed trained again after its weights were lost), the first
    `<curve>_training<n>.json` that does not: the finished training's
    record stays as it was."""
    if not curve:
        return curve
    base, extension = os.path.splitext(curve)
    candidate, number = curve, 1
    while os.path.exists(candidate):
        with open(candidate) as f:
            if "final" not in json.load(f):
                break
        number += 1
        candidate = f"{base}_training{number}{extension}"
    return candidate


def finished_info(ref_dir, arch, seed, epochs, lr):
    """The info of a finished reference (its weights and info files are
    both there), with its weights' `weights_sha256`; None otherwise."""
    if not protocol.reference_finished(ref_dir, arch, seed, epochs, lr):
        return None
    final, info_path = protocol.reference_files(ref_dir, arch, seed, epochs, lr)
    with open(info_path) as f:
        info = json.load(f)
    info.setdefault("weights_sha256", weights_id(final))
    return info


def train_reference(
    data, arch, seed, epochs, lr, warmup, ref_dir, curve, log, until=None
):
    """Trains (or resumes, or loads) the reference of `seed`; returns
    `(model, info)`. `info` has `val`, `test`, `epochs`, `path`. With
    `until` (POSIX seconds), raises `b6_protocol.Deadline` instead of
    starting an epoch that would end after it (as long as the last one)."""
    name = protocol.reference_stem(arch, seed, epochs, lr)
    final, info_path = protocol.reference_files(ref_dir, arch, seed, epochs, lr)
    state = os.path.join(ref_dir, name + ".state.keras")
    steps = cifar.steps_per_epoch(data, None, BATCH_SIZE)
    info = finished_info(ref_dir, arch, seed, epochs, lr)
    if info is not None:
        keras.utils.set_random_seed(seed)
        model = resnet_cifar.build(arch)
        model.load_weights(final)
        log(f"reference {name}: loaded (val {info['val']:.4f})")
        return model, info
    curve = own_curve(curve)
    history = {"arch": arch, "seed": seed, "recipe": recipe(epochs, lr, warmup)}
    history["epochs_done"] = []
    # The curve is kept next to the state too, so a resume does not depend
    # on the copy in the repository's working tree.
    kept_curve = os.path.join(ref_dir, name + ".curve.json")
    if os.path.exists(state):
        model = keras.saving.load_model(state)
        model.jit_compile = cifar.jit_compile()  # not kept by `save`
        # The curve kept next to the state is written with it, so it is
        # the state's own; the working tree's copy serves only without it
        # (a state saved before curves were kept beside it).
        for path in (kept_curve, curve):
            if path and os.path.exists(path):
                with open(path) as f:
                    history = json.load(f)
                break
        # The optimizer's step count says how many epochs the state holds.
        done = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        done //= steps
        rows = history["epochs_done"][:done]
        rows += [
            {"epoch": n + 1, "val": None, "not_recorded": True}
            for n in range(len(rows), done)
        ]
        history["epochs_done"] = rows
        log(f"reference {name}: resuming after epoch {done}")
    else:
        keras.utils.set_random_seed(seed)
        model = resnet_cifar.build(arch)
        model.compile(
            optimizer(lr, warmup * steps, epochs * steps),
            loss(),
            metrics=["accuracy"],
            jit_compile=cifar.jit_compile(),
        )
    os.makedirs(ref_dir, exist_ok=True)
    for epoch in range(len(history["epochs_done"]), epochs):
        timed = [
            r["seconds"] for r in history["epochs_done"] if r.get("seconds")
        ]
        protocol.check_until(
            until, timed[-1] if timed else None, f"{name} epoch {epoch + 1}"
        )
        start = time.perf_counter()
        result = model.fit(
            one_hot_batches(data, seed, STREAM_REFERENCE, epoch),
            steps_per_epoch=steps,
            epochs=1,
            verbose=0,
            shuffle=False,
        )
        seconds = time.perf_counter() - start
        val = accuracy(model, data["x_val"], data["y_val"])
        row = {
            "epoch": epoch + 1,
            "loss": float(result.history["loss"][-1]),
            "train_accuracy": float(result.history["accuracy"][-1]),
            "val": val,
            "seconds": round(seconds, 1),
            "xla": bool(model.jit_compile),
        }
        history["epochs_done"].append(row)
        temporary = state[: -len(".keras")] + ".tmp.keras"
        model.save(temporary)
        os.replace(temporary, state)
        report.write_atomic(kept_curve, json.dumps(history, indent=1))
        if curve:
            report.write_atomic(curve, json.dumps(history, indent=1))
        log(
            f"reference {name} epoch {epoch + 1}/{epochs}: loss "
            f"{row['loss']:.4f} train {row['train_accuracy']:.4f} val "
            f"{val:.4f} ({seconds:.0f} s, "
            f"{steps * BATCH_SIZE / seconds:.0f} images/s)"
        )
    info = {
        "arch": arch,
        "seed": seed,
        "epochs": epochs,
        "val": accuracy(model, data["x_val"], data["y_val"]),
        "test": accuracy(model, data["x_test"], data["y_test"]),
        "params": kg.stats.count_params(model),
        "flops": kg.stats.count_flops(model),
        "seconds": round(
            sum(r.get("seconds", 0) for r in history["epochs_done"]), 1
        ),
        "path": os.path.basename(final),
    }
    temporary = final[: -len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(temporary)
    os.replace(temporary, final)
    info["weights_sha256"] = weights_id(final)
    report.write_atomic(info_path, json.dumps(info, indent=1))
    # The weights and the info are all a finished reference needs; the
    # training state (twice the weights' bytes) goes.
    if os.path.exists(state):
        os.remove(state)
    if curve:
        history["final"] = {k: info[k] for k in ("val", "test", "seconds")}
        report.write_atomic(curve, json.dumps(history, indent=1))
    log(
        f"reference {name}: val {info['val']:.4f} test {info['test']:.4f} "
        f"({info['seconds']:.0f} s of training)"
    )
    return model, info


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar-dir", default=None)
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=protocol.REFERENCE_EPOCHS)
    parser.add_argument("--lr", type=float, default=protocol.REFERENCE_LR)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--ref-dir", default=DEFAULT_DIR)
    parser.add_argument("--curve", default=None)
    parser.add_argument(
        "--json",
        default=None,
        help="B6's results file (docs/benchmarks_b6.json): a finished "
        "reference's row is put in it, so the page lists every finished "
        "reference, whether or not a cell has started from it yet",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="TensorFlow's intra- and inter-op threads (default: its own "
        "choice); 1 when another run shares the cores",
    )
    parser.add_argument(
        "--until",
        type=protocol.until_argument,
        default=None,
        help="stop (exit code 4) rather than start an epoch that would end "
        "after this time: 'HH:MM' (its next occurrence) or an ISO date and "
        "time; an epoch is expected to take as long as the last one",
    )
    args = parser.parse_args(argv)
    return args


def main(argv=None):
    args = parse_args(argv)
    cifar.set_threads(args.threads)
    log = report.clock_log

    key = (args.ref_dir, args.arch, args.seed, args.epochs, args.lr)
    name = protocol.reference_stem(*key[1:])
    with protocol.training_reference(*key) as mine:
        if not mine:
            log(
                f"reference {name}: another process is training it now; "
                "nothing to do here"
            )
            return 0
        # A finished reference needs no images: its row is in its info.
        info = finished_info(*key)
        try:
            if info is None:
                data = cifar.split(cifar.load(args.cifar_dir))
                _, info = train_reference(
                    data,
                    args.arch,
                    args.seed,
                    args.epochs,
                    args.lr,
                    args.warmup,
                    args.ref_dir,
                    args.curve,
                    log,
                    until=args.until,
                )
            else:
                log(f"reference {name}: finished (val {info['val']:.4f})")
        except protocol.Deadline as stop:
            log(f"reference: {stop}; the state holds every finished epoch")
            return protocol.UNTIL_EXIT
    if args.json:
        row = results_file.reference_row(info, args.lr)
        results_file.record(args.json, reference=row)
        log(f"reference {name}: its row is in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
