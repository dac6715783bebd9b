"""The commands: `demo`, `inspect`, `prune`, `export`, `latency`.

Each `run_*` takes the parsed arguments, checks its inputs first (the
options, then the files, see `_files`), does the work, prints its report on
stdout and returns the exit code 0; a bad input raises `CommandError`.
"""

import os

from keras_guided.cli._files import check_output
from keras_guided.cli._files import first_rows
from keras_guided.cli._files import load_calibration
from keras_guided.cli._files import load_model
from keras_guided.cli._files import save_model
from keras_guided.cli._messages import CommandError
from keras_guided.cli._messages import one_line
from keras_guided.cli._messages import progress


def run_demo(args):
    from keras_guided import demo

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CommandError(f"--out '{args.out}' exists and is not a directory")
    demo.run_demo(out_dir=args.out, seed=args.seed, quick=args.quick)
    return 0


def run_export(args):
    check_output(args.output, ".tflite")
    quantization = None if args.quantize == "none" else args.quantize
    if quantization == "int8" and not args.calibration:
        raise CommandError(
            "--quantize int8 needs --calibration DATA.npy: a few hundred "
            "typical inputs, shape (N,) + the model's input shape"
        )
    if args.int8_io and quantization != "int8":
        raise CommandError("--int8-io needs --quantize int8")
    for name in ("num_runs", "threads"):
        if getattr(args, name) < 1:
            raise CommandError(
                f"--{name.replace('_', '-')} must be a positive integer. "
                f"Received: {getattr(args, name)}"
            )
    data = load_calibration(args.calibration) if args.calibration else None
    model = load_model(args.model)

    from keras_guided import export as export_lib

    mode = quantization or "float32"
    progress(f"converting to TFLite ({mode}, built-in ops only) ...")
    report = export_lib.export_tflite(
        model,
        args.output,
        quantization=quantization,
        representative_data=data,
        int8_io=args.int8_io,
        verify=not args.no_verify,
        sample_inputs=None if data is None else first_rows(data, 64),
        measure_latency=args.latency,
        num_runs=args.num_runs,
        num_threads=args.threads,
        sequence_length=args.sequence_length,
    )
    print(report.summary())
    return 0


def _find_groups(model, skip_unsupported):
    from keras_guided import graph

    mode = "keep" if skip_unsupported else "raise"
    try:
        return graph.find_unit_groups(model, on_unsupported=mode)
    except ValueError as error:
        hint = (
            ""
            if skip_unsupported
            else (" (use --skip-unsupported to leave such groups intact)")
        )
        raise CommandError(one_line(error) + hint) from None


def run_inspect(args):
    model = load_model(args.model)
    import numpy as np

    from keras_guided import scoring
    from keras_guided import stats

    progress("finding unit groups ...")
    groups = _find_groups(model, args.skip_unsupported)
    norms = scoring.unit_scores(groups, normalize=False)
    dead = scoring.dead_units(groups)
    rows = []
    for group, group_norms, group_dead in zip(groups, norms, dead):
        rows.append(
            {
                "group": group.index,
                "layers": ", ".join(group.layers),
                "units": group.num_units,
                "dead": int(np.sum(group_dead)),
                "norm min": float(np.min(group_norms)),
                "norm median": float(np.median(group_norms)),
                "norm max": float(np.max(group_norms)),
                "prunable": "yes" if group.prunable else f"no: {group.reason}",
            }
        )
    print(
        f"model '{model.name}': {stats.count_params(model):,} params, "
        f"{stats.count_flops(model):,} FLOPs per example, "
        f"{len(groups)} unit groups"
    )
    print(stats.format_table(rows))
    print(
        "norm: L2 norm of the weights that shape a unit's output (kernel "
        "slice, bias, BatchNormalization gamma and beta); dead: every "
        "incoming kernel weight is zero."
    )
    progress("dry run of `keras-guided prune` (dead units only) ...")
    pruned, report = _prune(model, args, verify=False)
    after = stats.count_params(pruned)
    print(
        f"`keras-guided prune` would remove {report.removed_units} units in "
        f"{len(report.removed)} groups: {stats.count_params(model):,} -> "
        f"{after:,} params. Use --threshold or --target to remove live "
        "units too."
    )
    return 0


def _prune(model, args, verify=True):
    from keras_guided import surgery

    options = {}
    if getattr(args, "target_kind", None) == "latency" and (
        args.target is not None
    ):
        from keras_guided import latency

        progress(
            "building the LiteRT latency table (float32, 1 thread; cached) ..."
        )
        options["latency_table"] = latency.build_latency_table(model)
    if getattr(args, "threshold", None) is not None:
        options["threshold"] = args.threshold
    if getattr(args, "target", None) is not None:
        if args.target_kind == "units":
            options["target"] = args.target
        else:
            options["target"] = {args.target_kind: args.target}
    try:
        return surgery.prune_model(
            model,
            min_units=getattr(args, "min_units", 1),
            protected=tuple(getattr(args, "protect", ())),
            on_unsupported="keep" if args.skip_unsupported else "raise",
            verify=verify,
            return_report=True,
            **options,
        )
    except ValueError as error:
        hint = ""
        if "unsupported" in str(error).lower() and not args.skip_unsupported:
            hint = " (use --skip-unsupported to leave such groups intact)"
        raise CommandError(one_line(error) + hint) from None


def run_prune(args):
    check_output(args.output, ".keras")
    if args.target is not None and not 0 < args.target <= 1:
        raise CommandError(
            "--target must be the fraction to keep, a number in (0, 1], "
            "e.g. `--target 0.5 --target-kind flops` to keep half of the "
            f"FLOPs. Received: --target {args.target:g}"
        )
    model = load_model(args.model)
    from keras_guided import stats

    what = "dead units"
    if args.threshold is not None:
        what = f"units with score below {args.threshold}"
    if args.target is not None:
        what = (
            f"down to {args.target:.0%} of the {args.target_kind} "
            "(least important units first)"
        )
    progress(f"pruning {what} ...")
    pruned, report = _prune(model, args)
    print(report.summary())
    progress(f"saving {args.output} ...")
    save_model(pruned, args.output)
    print(
        f"wrote {os.path.abspath(args.output)}: "
        f"{stats.count_params(model):,} -> {stats.count_params(pruned):,} "
        "params"
    )
    return 0


def run_latency(args):
    model = load_model(args.model)
    from keras_guided import latency

    quantization = None if args.quantize == "none" else args.quantize
    progress(f"measuring the latency table of '{model.name}' ...")
    table = latency.build_latency_table(
        model,
        quantization=quantization,
        num_threads=args.threads,
        num_samples=args.num_samples,
        num_runs=args.num_runs,
        cache_dir=args.cache_dir,
        whole_model=not args.no_measure,
    )
    print(table.summary())
    return 0
