"""B6: the CIFAR-10 pruning grid, one cell at a time, from strong references.

Every cell starts from a reference trained by `benchmarks/b6_reference.py`
(ResNet-20, all 45,000 training images) and spends the same number of
*extra epochs* `E` (full 45,000-image epochs, counted from the reference):
a method's regularization phase plus its fine-tuning at the final widths
add up to `E` for every method.

- `guided`: `GuidedPruning(target={"flops": f})` for `p` epochs (default
  `E // 2` when `E >= 4`, else 1), `prune_model`, then `E - p` epochs of
  fine-tuning;
- `l1_oneshot`: `prune_model(reference, target={"flops": f})` (a global,
  layer-normalized filter-norm ranking with a FLOPs-aware finish), then
  `E` epochs of fine-tuning;
- `li_l1`: Li et al. (2017) per layer: the `ceil(s * n)` largest L1
  filter norms of every prunable layer, the same share `s` everywhere
  (the largest meeting the budget; B4's `l1_uniform`), then `E` epochs;
- `tp_magnitude`: Torch-Pruning's `MagnitudePruner` (group L1 importance,
  global) one shot to the MACs budget, then `E` epochs;
- `tp_group_sl`: Torch-Pruning's `GroupNormPruner` sparsity learning for
  `s` epochs (same rule as `p`) with weight decay 0 and
  `GroupMagnitudeImportance(p=2, normalizer='max')` as in TP's CIFAR
  recipe, global pruning stepped to the MACs budget, then `E - s` epochs.

The Torch-Pruning phases run in their own process (`b4_torch.py`, on the
reference ported to PyTorch); the pruned network comes back to Keras, so
the fine-tuning is the same code for every method: distillation from the
reference (`b4_cifar.distill`: `keras_guided.Distiller`, alpha 0.1,
temperature 4), keeping the *last* epoch (`--finetune-keep best` keeps the
best validation epoch instead; each cell records which). Every phase is
SGD (momentum 0.9, Nesterov, batch 128) with a cosine learning rate from
`--lr` (0.01) to 0 over that phase, decoupled weight decay 5e-3 as in the
reference, except Torch-Pruning's sparsity learning (weight decay 0, as TP
sets it), and guided's variants that start the fine-tuning (`ft_low`)
or both phases (`lr_low`) at 0.003. The regularization phases train on
the labels (`guided`'s `kd` variants by distillation).

Variants (`--methods guided:kd,tp_group_sl:reg2e-3`; `guided:all` for
every one), the chosen ones (`CHOSEN`) and the plan of cells live in
`benchmarks/b6_protocol.py`: variants run with `--role tune` on the tuning
seed (0) and are compared on its validation images; test seeds (`--role
test`) run only the chosen variant, or `default` until one is recorded
(the cell says which: `variant_source`). `--show-choices` prints the best
variant per method, budget and `E` from the tuning cells.

Each cell is written to `--json` (default `docs/benchmarks_b6.json`,
`benchmarks/b6_results.py`) when done, under the key `(arch, budget,
method, variant, seed, extra_epochs)`, and skipped when already there; the
references' rows are copied from their info files.

    python -m benchmarks.b6_cifar --role tune --seeds 0 --extra-epochs 2 \\
        --budgets 2x,4x --methods guided,guided:kd,l1_oneshot \\
        --torch-python /path/to/torch/python
    python -m benchmarks.b6_cifar --quick --methods guided,l1_oneshot
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_guided as kg  # noqa: E402
from benchmarks import b4_cifar  # noqa: E402
from benchmarks import b6_cuts as cuts  # noqa: E402
from benchmarks import b6_protocol as protocol  # noqa: E402
from benchmarks import b6_reference  # noqa: E402
from benchmarks import b6_results as results_file  # noqa: E402
from benchmarks import cifar  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import resnet_cifar  # noqa: E402

# ------------------------------------------------------------ a cell


def reference(args, data, seed, log):
    """`(model, reference row)` of `seed`: the finished B6 reference, or in
    quick mode a tiny one trained here."""
    if args.quick:
        keras.utils.set_random_seed(seed)
        model = resnet_cifar.build(args.arch)
        b4_cifar.train(
            model,
            data,
            args.cfg,
            seed,
            b6_reference.STREAM_REFERENCE,
            args.ref_epochs,
            args.ref_lr,
        )
        info = {
            "val": b4_cifar.accuracy(model, data["x_val"], data["y_val"]),
            "test": b4_cifar.accuracy(model, data["x_test"], data["y_test"]),
        }
    else:
        refs = (args.ref_dir, args.arch, seed, args.ref_epochs, args.ref_lr)
        if not protocol.reference_finished(*refs):
            files = protocol.reference_files(*refs)
            name = protocol.reference_stem(*refs[1:])
            raise FileNotFoundError(
                f"the reference {name} is not finished: {files} must exist. "
                "Train it first: python -m benchmarks.b6_reference --seed "
                f"{seed} --epochs {args.ref_epochs} --lr {args.ref_lr}."
            )
        model, info = b6_reference.train_reference(
            data,
            args.arch,
            seed,
            args.ref_epochs,
            args.ref_lr,
            None,
            args.ref_dir,
            None,
            log,
        )
    info.update(
        arch=args.arch,
        seed=seed,
        epochs=args.ref_epochs,
        flops=kg.stats.count_flops(model),
        params=kg.stats.count_params(model),
    )
    row = results_file.reference_row(info, args.ref_lr)
    return model, row


def cut(method, settings, ref, fraction, data, cfg, seed, args, log, label):
    """The regularization phase and the cut; returns `(pruned model,
    info)` with `after_cut_val` and `after_cut_test`."""
    epochs = settings["regularization_epochs"]
    if method == "guided":
        variant = {
            k: v for k, v in settings.items() if k != "regularization_epochs"
        }
        if "target_epochs_share" in variant:
            # The path's share of the penalty epochs (GuidedPruning's
            # target_epochs, a float within an epoch).
            variant["target_epochs"] = epochs * variant.pop(
                "target_epochs_share"
            )
        small, info = b4_cifar.guided_phase(
            ref,
            fraction,
            data,
            {**cfg, "prune_epochs": epochs},
            seed,
            log,
            label,
            variant,
        )
    elif method in protocol.TORCH_METHODS:
        from benchmarks import b4_torch_client

        torch_cfg = {
            **cfg,
            "prune_epochs": epochs,
            "finetune_epochs": 0,  # fine-tuned here, like every method
            **({"tp_reg": settings["reg"]} if "reg" in settings else {}),
            "prune_weight_decay": 0.0,
            "tp_normalizer": "max",
        }
        small, info = b4_torch_client.run(
            method, ref, fraction, data, torch_cfg, seed, args, log, label
        )
        for name in ("finetune_epoch_chosen", "val_per_finetune_epoch"):
            info.pop(name, None)
    else:
        if method == "l1_oneshot":
            small = kg.prune_model(ref, target={"flops": fraction})
        else:
            small = b4_cifar.uniform_cut(ref, fraction)
        info = b4_cifar._after_cut(small, data)
    info["after_cut_val"] = info.pop("val_after_cut")
    info["after_cut_test"] = info.pop("test_after_cut")
    return small, info


def run_cell(cell, ref, ref_row, data, args, log):
    """Runs one cell; returns its row."""
    budget, method, variant, seed, extra_epochs, source = cell
    label = f"[{method}:{variant} {budget} E={extra_epochs} seed {seed}]"
    settings = protocol.effective(method, variant, extra_epochs)
    # A variant may start either phase at its own learning rate.
    regularization_lr = settings.pop("regularization_lr", args.cfg["lr"])
    finetune_lr = settings.pop("finetune_lr", args.cfg["lr"])
    fraction = protocol.budget_fraction(budget)
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    cfg = {**args.cfg, "lr": regularization_lr}
    stored = None
    name = None
    if args.cut_cache:
        name = cuts.key(
            {
                "arch": args.arch,
                "seed": seed,
                "reference": cuts.weights_digest(ref),
                "data": cuts.data_digest(data),
                "fraction": fraction,
                "method": method,
                "settings": settings,
                "cfg": cfg,
                "threads": args.threads,
            }
        )
        stored = cuts.load(
            args.cut_cache,
            name,
            lambda m: b4_cifar.accuracy(m, data["x_val"], data["y_val"]),
        )
    if stored is not None:
        small, info, cut_seconds = stored
        log(
            f"{label} the cut of an earlier cell with the same first phase, "
            f"from {args.cut_cache} (trained in {cut_seconds:.0f} s)"
        )
    else:
        small, info = cut(
            method, settings, ref, fraction, data, cfg, seed, args, log, label
        )
        cut_seconds = round(time.perf_counter() - start, 1)
        if name is not None:
            try:
                cuts.save(args.cut_cache, name, small, info, cut_seconds)
            except Exception as error:  # a cache is an economy, not a need
                log(f"{label} its cut is not stored: {error!r}")
    log(
        f"{label} after the cut: val {info['after_cut_val']:.4f} "
        f"({cut_seconds:.0f} s)"
    )
    finetune_start = time.perf_counter()
    finetune_epochs = extra_epochs - settings["regularization_epochs"]
    small, kept, history = b4_cifar.distill(
        small,
        ref,
        data,
        {**args.cfg, "finetune_epochs": finetune_epochs, "lr": finetune_lr},
        seed,
        log,
        label,
    )
    flops = kg.stats.count_flops(small)
    row = {
        "arch": args.arch,
        "budget": budget,
        "method": method,
        "variant": variant,
        "seed": seed,
        "role": args.role,
        "extra_epochs": extra_epochs,
        "val": b4_cifar.accuracy(small, data["x_val"], data["y_val"]),
        "test": b4_cifar.accuracy(small, data["x_test"], data["y_test"]),
        "after_cut_val": info.pop("after_cut_val"),
        "after_cut_test": info.pop("after_cut_test"),
        "flops_kept": flops / ref_row["flops"],
        "reference_sha256": ref_row.get("weights_sha256"),
        "params": kg.stats.count_params(small),
        # What the cell costs without a cache: its first phase (however
        # it was had) and its fine-tuning.
        "seconds": round(cut_seconds + time.perf_counter() - finetune_start, 1),
        "cut_seconds": cut_seconds,
        "cut_from_cache": stored is not None,
        "machine": cifar.machine(args.threads),
        "variant_settings": protocol.VARIANTS[method][variant],
        "variant_source": source,
        "regularization_epochs": settings["regularization_epochs"],
        "finetune_epochs": finetune_epochs,
        "finetune_keep": args.cfg["finetune_keep"],
        "finetune_epoch_kept": kept,
        "val_per_finetune_epoch": history,
        "lr": args.cfg["lr"],
        "regularization_lr": regularization_lr,
        "finetune_lr": finetune_lr,
        "train_images": args.cfg["train_images"] or len(data["y_train"]),
        "widths": resnet_cifar.conv_widths(small),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        # The commit checked out when the grid started, the code the cell
        # ran (a cell from before a change to the library's recipe is run
        # again, not mixed in).
        "git_commit": _commit(),
        **info,
    }
    if row["flops_kept"] > fraction * 1.01:
        log(
            f"{label} WARNING: FLOPs kept {row['flops_kept']:.4f} is over "
            f"the budget {fraction:.4f}"
        )
    return row


# ------------------------------------------------------------ the grid


def _commit():
    if not hasattr(_commit, "value"):
        _commit.value = report.machine()["git_commit"]
    return _commit.value


def settings_header(args):
    return {
        "settings": {
            "extra_epoch_images": args.cfg["train_images"] or 45000,
            "batch_size": b4_cifar.BATCH_SIZE,
            "momentum": b4_cifar.MOMENTUM,
            "nesterov": True,
            "lr": args.cfg["lr"],
            "lr_schedule": "cosine to 0 within each phase",
            "weight_decay": protocol.WEIGHT_DECAY,
            "weight_decay_kind": "decoupled; 0 in TP sparsity learning",
            "kd_alpha": b4_cifar.KD_ALPHA,
            "kd_temperature": b4_cifar.KD_TEMPERATURE,
            "tp_normalizer": "max",
            "finetune_keep": args.cfg["finetune_keep"],
            "tune_seeds": list(protocol.TUNE_SEEDS),
        },
        "descriptions": protocol.DESCRIPTIONS,
        "left_out": protocol.LEFT_OUT,
        "variants": protocol.VARIANTS,
        "chosen": protocol.CHOSEN,
    }


def run(args, data=None, log=None):
    """Runs the cells of `args` not yet in `args.json`; returns the
    results."""
    log = log or _log
    _commit()  # the commit checked out now, when this grid's code loaded
    cells = protocol.plan_cells(
        args.methods,
        args.budgets,
        args.extra_epochs,
        args.seeds,
        args.role,
        log,
    )
    todo = results_file.pending_cells(args.json, args.arch, cells)
    log(
        f"B6 {args.arch}: {len(todo)} of {len(cells)} cells to run "
        f"({len(cells) - len(todo)} already in {args.json})"
    )
    results = results_file.record(args.json, header=settings_header(args))
    if not todo:
        return results
    if data is None:
        data = load_data(args)
    refs = {}
    deferred = []
    for cell in todo:
        seed = cell[3]
        label = f"{cell[1]}:{cell[2]} {cell[0]} E={cell[4]} seed {seed}"
        try:
            protocol.check_until(
                args.until,
                results_file.expected_seconds(
                    args.json,
                    args.arch,
                    cell[1],
                    cell[4],
                    cifar.machine(args.threads),
                    cell[2],
                ),
                f"cell {label}",
            )
        except protocol.Deadline as stop:
            log(f"{stop}; a shorter cell may still fit")
            deferred.append(label)
            continue
        with results_file.claim(args.json, args.arch, cell) as mine:
            if not mine:
                log(
                    f"cell {label}: another process is running it or has "
                    "run it; skipped"
                )
                continue
            if seed not in refs:
                keras.backend.clear_session()
                refs[seed] = reference(args, data, seed, log)
                results_file.record(args.json, reference=refs[seed][1])
            ref, ref_row = refs[seed]
            log(f"cell {label}: start")
            try:
                row = run_cell(cell, ref, ref_row, data, args, log)
            except b4_cifar._Skipped as reason:
                log(f"cell {label}: not run ({reason})")
                continue
            results = results_file.record(args.json, cell=row)
        log(
            f"cell {label}: val {row['val']:.4f} test {row['test']:.4f} "
            f"(after the cut {row['after_cut_val']:.4f}), FLOPs kept "
            f"{row['flops_kept']:.3f}, {row['seconds']:.0f} s"
        )
    if deferred:
        raise protocol.Deadline(
            f"{len(deferred)} cell(s) not started, each expected to end "
            f"after --until: {', '.join(deferred)}"
        )
    return results


def load_data(args):
    data = cifar.split(cifar.load(args.cifar_dir, args.cache))
    return cifar.shrink_evaluation(data, args.cfg["eval_images"])


def _log(message):
    print(time.strftime("%Y-%m-%d %H:%M:%S"), message, flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.b6_cifar", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--cifar-dir", default=None)
    parser.add_argument("--cache", default=cifar.DEFAULT_CACHE)
    parser.add_argument(
        "--json", default=None, help=f"default {results_file.DEFAULT_JSON}"
    )
    parser.add_argument("--ref-dir", default=b6_reference.DEFAULT_DIR)
    parser.add_argument(
        "--ref-epochs", type=int, default=protocol.REFERENCE_EPOCHS
    )
    parser.add_argument("--ref-lr", type=float, default=protocol.REFERENCE_LR)
    parser.add_argument(
        "--arch", default=protocol.ARCH, choices=sorted(resnet_cifar.ARCHS)
    )
    parser.add_argument("--role", choices=("tune", "test"), default="tune")
    parser.add_argument("--seeds", default=None, help="e.g. 1,2,3")
    parser.add_argument(
        "--budgets", default=None, help="e.g. 2x,4x (default 2x,4x,3x)"
    )
    parser.add_argument(
        "--extra-epochs", default=None, help="e.g. 2,8 (default 2,8)"
    )
    parser.add_argument(
        "--methods",
        default=",".join(protocol.METHODS),
        help="e.g. guided,guided:kd,tp_group_sl:reg2e-3",
    )
    parser.add_argument("--lr", type=float, default=protocol.LR)
    parser.add_argument(
        "--finetune-keep",
        choices=("last", "best"),
        default="last",
        help="the fine-tuning's last epoch, or its best validation epoch",
    )
    parser.add_argument(
        "--torch-python",
        default=os.environ.get("KERAS_GUIDED_TORCH_PYTHON", sys.executable),
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--cut-cache",
        default=None,
        help="a folder keeping each cell's cut, so that a cell with the "
        "same first phase (a variant changing only the fine-tuning) starts "
        f"from it (`benchmarks/b6_cuts.py`; the queue uses {cuts.DEFAULT_DIR}"
        "); default: none",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 256-image epochs, 200 evaluation images, a "
        "1-epoch reference trained here, a temporary JSON",
    )
    parser.add_argument("--show-choices", action="store_true")
    parser.add_argument(
        "--until",
        type=protocol.until_argument,
        default=None,
        help="start no cell that would end after this time ('HH:MM', its "
        "next occurrence, or an ISO date and time), run the shorter ones "
        "that fit, and exit with code 4 when any was left; a cell is "
        "expected to take as long as the longest of its method and extra "
        "epochs in the JSON",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.ref_epochs, args.ref_lr = (
            protocol.QUICK["ref_epochs"],
            protocol.QUICK["ref_lr"],
        )
        if args.json is None:
            handle, args.json = tempfile.mkstemp(suffix="_b6_quick.json")
            os.close(handle)
            os.remove(args.json)
    args.json = args.json or results_file.DEFAULT_JSON
    default_seeds = protocol.TUNE_SEEDS if args.role == "tune" else (1, 2, 3)
    args.seeds = (
        protocol.csv(args.seeds, int) if args.seeds else list(default_seeds)
    )
    if args.budgets is None:
        args.budgets = ",".join(
            protocol.QUICK["budgets"] if args.quick else protocol.BUDGETS
        )
    args.budgets = [
        protocol.parse_budget(b) for b in protocol.csv(args.budgets)
    ]
    if args.extra_epochs:
        args.extra_epochs = protocol.csv(args.extra_epochs, int)
    else:
        args.extra_epochs = (
            protocol.QUICK["extra_epochs"]
            if args.quick
            else protocol.EXTRA_EPOCHS
        )
    args.methods = protocol.expand_methods(protocol.csv(args.methods))
    args.cfg = {
        "arch": args.arch,
        "train_images": protocol.QUICK["train_images"] if args.quick else None,
        "eval_images": protocol.QUICK["eval_images"] if args.quick else None,
        "lr": args.lr,
        "weight_decay": protocol.WEIGHT_DECAY,
        "finetune_keep": args.finetune_keep,
    }
    return args


def main(argv=None, data=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.show_choices:
        print(results_file.show_choices(args.json))
        return None
    cifar.set_threads(args.threads)
    try:
        protocol.plan_cells(
            args.methods,
            args.budgets,
            args.extra_epochs,
            args.seeds,
            args.role,
            log=lambda message: None,
        )
    except ValueError as error:
        raise SystemExit(f"b6_cifar: {error}") from None
    try:
        results = run(args, data)
    except FileNotFoundError as error:  # an unfinished reference
        raise SystemExit(f"b6_cifar: {error}") from None
    except protocol.Deadline as stop:
        _log(f"{stop}; the cells done are in {args.json}")
        raise SystemExit(protocol.UNTIL_EXIT) from None
    _log(f"results in {args.json}")
    return results


if __name__ == "__main__":
    main()
