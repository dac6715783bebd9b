"""B6's compute queue: the references and cells of `b6_protocol.QUEUE`, in
order, each step in its own process, skipping what is already done.

A step is a reference (`benchmarks/b6_reference.py`, resumed at its next
epoch when it was stopped) or a set of cells (`benchmarks/b6_cifar.py`,
which skips the cells already in the JSON). The queue skips, and exits
with code 3 at the end, the test cells of a method with variants whose
variant is not chosen yet: record the choices in `b6_protocol.CHOSEN`
(`python -m benchmarks.b6_cifar --show-choices` prints them from the
tuning cells) and run it again. A failing step stops the queue with its
exit code. With `--until 05:50` no step starts an epoch or a cell that
would end after 05:50; the queue goes on to the work that still fits
(the cells of finished references) and exits with code 4 when any was
left, everything finished saved, so a machine can be handed back on time
without losing a half-trained cell.

    PYTHONPATH=. python -m benchmarks.b6_queue \\
        --cifar-dir ../shared/data/cifar10-jpeg \\
        --torch-python /path/to/a/python/with/torch-pruning
    PYTHONPATH=. python -m benchmarks.b6_queue --dry-run   # what is left

On two cores, two queues share the work as lanes, each with one thread
(`--threads 1`). Every cells step runs only on the seeds whose reference
is finished (the rest waits for a later run); a reference another
process is training (its lock is held) is skipped, and so is a cell
another grid is running (`b6_results.claim`). So two queues started the
same way train two references side by side, then run different cells.
`--lane references` or `--lane cells` keeps a queue to one kind of work.
"""

import argparse
import datetime
import os
import subprocess
import sys
import time

from benchmarks import b6_cuts as cuts
from benchmarks import b6_protocol as protocol
from benchmarks import b6_results as results_file
from benchmarks import report

NEEDS_CHOICES = 3


def pending(step, args):
    """What is left of `step`: `[seed]` for an unfinished reference, the
    cells not yet in the JSON for a set of cells."""
    if step[0] == "reference":
        seed = step[1]
        done = protocol.reference_finished(
            args.ref_dir, protocol.ARCH, seed, args.ref_epochs, args.ref_lr
        )
        return [] if done else [seed]
    _, role, seeds, extra_epochs, budgets, methods = step
    cells = protocol.plan_cells(
        protocol.expand_methods(protocol.csv(methods)),
        [protocol.parse_budget(b) for b in protocol.csv(budgets)],
        protocol.csv(extra_epochs, int),
        protocol.csv(seeds, int),
        role,
        log=lambda message: None,
    )
    return results_file.pending_cells(args.json, protocol.ARCH, cells)


def ready_seeds(step, args):
    """The seeds of a cells step whose reference is finished."""
    return [
        seed
        for seed in protocol.csv(step[2], int)
        if protocol.reference_finished(
            args.ref_dir, protocol.ARCH, seed, args.ref_epochs, args.ref_lr
        )
    ]


def in_lane(step, args):
    """`step` with only what `args.lane` runs of it, or None: the
    references lane runs no cells, the cells lane no reference, and a
    cells step runs only on the seeds whose reference is finished (in
    every lane: a reference another lane trains, or one left for
    `--until`, is not)."""
    if step[0] == "reference":
        return step if args.lane != "cells" else None
    if args.lane == "references":
        return None
    seeds = ready_seeds(step, args)
    if not seeds:
        return None
    return (step[0], step[1], ",".join(map(str, seeds)), *step[3:])


def missing_choices(step):
    """`method|budget|E` that a test step would run unchosen."""
    if step[0] != "cells" or step[1] != "test":
        return []
    _, _, _, extra_epochs, budgets, methods = step
    return protocol.unchosen(
        protocol.csv(methods),
        [protocol.parse_budget(b) for b in protocol.csv(budgets)],
        protocol.csv(extra_epochs, int),
    )


def command(step, args):
    """The command line that runs `step`."""
    python = [sys.executable, "-m"]
    common = ["--cifar-dir", args.cifar_dir, "--ref-dir", args.ref_dir]
    if args.threads:
        common += ["--threads", str(args.threads)]
    if args.until is not None:
        until = datetime.datetime.fromtimestamp(args.until)
        common += ["--until", until.isoformat(timespec="seconds")]
    if step[0] == "reference":
        seed = step[1]
        curve = os.path.join(
            "docs", "benchmarks_b6_curves", f"{protocol.ARCH}_seed{seed}.json"
        )
        return python + [
            "benchmarks.b6_reference",
            *common,
            "--arch",
            protocol.ARCH,
            "--seed",
            str(seed),
            "--epochs",
            str(args.ref_epochs),
            "--lr",
            str(args.ref_lr),
            "--curve",
            curve,
            "--json",
            args.json,
        ]
    _, role, seeds, extra_epochs, budgets, methods = step
    return python + [
        "benchmarks.b6_cifar",
        *common,
        "--ref-epochs",
        str(args.ref_epochs),
        "--ref-lr",
        str(args.ref_lr),
        "--json",
        args.json,
        "--role",
        role,
        "--seeds",
        seeds,
        "--extra-epochs",
        extra_epochs,
        "--budgets",
        budgets,
        "--methods",
        methods,
        "--torch-python",
        args.torch_python,
        *(["--cut-cache", args.cut_cache] if args.cut_cache else []),
    ]


def describe(step):
    if step[0] == "reference":
        return f"reference, seed {step[1]}"
    _, role, seeds, extra_epochs, budgets, methods = step
    return (
        f"{role} cells: seeds {seeds}, E={extra_epochs}, {budgets}, {methods}"
    )


def in_order(args):
    """`(number, step, needed)` for the steps of `protocol.QUEUE`, in the
    order they run: each reference just before the first cells step with
    cells left on its seed, so the references that the next cells need
    are trained first. A reference no cell left needs comes first with
    `needed` False (it is not trained)."""
    numbered = list(enumerate(protocol.QUEUE, 1))
    references = {s[1]: (n, s) for n, s in numbered if s[0] == "reference"}
    ordered, placed = [], set()
    for number, step in numbered:
        if step[0] == "reference":
            continue
        for seed in sorted({cell[3] for cell in pending(step, args)}):
            if seed in references and seed not in placed:
                ordered.append((*references[seed], True))
                placed.add(seed)
        ordered.append((number, step, True))
    idle = [
        (number, step, False)
        for seed, (number, step) in references.items()
        if seed not in placed
    ]
    return idle + ordered


def run(args, log=report.clock_log, runner=subprocess.call):
    """Runs the queue; returns an exit code: 0 when all is done, a failing
    step's code (it stops the queue), else `NEEDS_CHOICES` when test cells
    wait for a choice or `UNTIL_EXIT` when work was left for `--until`
    (the queue goes on past both to the steps it can run)."""
    outcome = 0
    for number, whole, needed in in_order(args):
        name = f"step {number}/{len(protocol.QUEUE)} ({describe(whole)})"
        everything = pending(whole, args)
        if not everything:
            log(f"{name}: done")
            continue
        if not needed:
            log(f"{name}: no cell left needs it yet")
            continue
        step = in_lane(whole, args)
        if step is None:
            if whole[0] == "cells" and args.lane != "references":
                seeds = _seeds_text(sorted({c[3] for c in everything}))
                log(
                    f"{name}: {len(everything)} cell(s) left; they wait for "
                    f"the references of {seeds}"
                )
            else:
                log(f"{name}: not in the {args.lane} lane (another lane's)")
            continue
        if step != whole:
            name += f", on seeds {step[2]} (their references are finished)"
        left = pending(step, args)
        if not left:
            log(f"{name}: done")
            continue
        if step[0] == "reference" and protocol.reference_busy(
            args.ref_dir, protocol.ARCH, step[1], args.ref_epochs, args.ref_lr
        ):
            log(f"{name}: another process is training it now; skipped")
            continue
        what = "to train" if step[0] == "reference" else f"{len(left)} cell(s)"
        missing = missing_choices(step)
        if missing:
            log(
                f"{name}: {what} left, but no variant is chosen for "
                f"{', '.join(missing)}. Record the choices in "
                "benchmarks/b6_protocol.py's CHOSEN (`python -m "
                "benchmarks.b6_cifar --show-choices` prints them from the "
                "tuning cells), then run the queue again; it goes on to "
                "the steps that need no choice."
            )
            outcome = outcome or NEEDS_CHOICES
            continue
        if args.dry_run:
            log(f"{name}: {what} left")
            continue
        log(f"{name}: {what} left; running")
        start = time.perf_counter()
        code = runner(command(step, args))
        if code == protocol.UNTIL_EXIT:
            log(
                f"{name}: left work that would end after --until (what it "
                "finished is saved); the queue goes on to what may fit"
            )
            outcome = code
            continue
        if code:
            log(f"{name}: failed (exit code {code}); the queue stops")
            return code
        log(f"{name}: finished in {time.perf_counter() - start:.0f} s")
    return outcome


def _seeds_text(seeds):
    """'seed 1' or 'seeds 1, 2'."""
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(
        map(str, seeds)
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.b6_queue",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--cifar-dir", default=None)
    parser.add_argument("--ref-dir", default=protocol.REFERENCE_DIR)
    parser.add_argument(
        "--ref-epochs", type=int, default=protocol.REFERENCE_EPOCHS
    )
    parser.add_argument("--ref-lr", type=float, default=protocol.REFERENCE_LR)
    parser.add_argument("--json", default=results_file.DEFAULT_JSON)
    parser.add_argument(
        "--torch-python",
        default=os.environ.get("KERAS_GUIDED_TORCH_PYTHON", sys.executable),
    )
    parser.add_argument(
        "--cut-cache",
        default=cuts.DEFAULT_DIR,
        help="where the cells keep their cuts, so that a variant changing "
        "only the fine-tuning starts from its twin's cut "
        "(`benchmarks/b6_cuts.py`); '' for none",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what is left; run nothing"
    )
    parser.add_argument(
        "--lane",
        choices=("all", "references", "cells"),
        default="all",
        help="run every step (all), only the references, or only the "
        "cells whose references are finished",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="TensorFlow threads of each step (1 when two lanes share two "
        "cores; default: each step's own default)",
    )
    parser.add_argument(
        "--until",
        type=protocol.until_argument,
        default=None,
        help="start no epoch or cell that would end after this time "
        "('HH:MM', its next occurrence, or an ISO date and time): the "
        "queue stops with exit code 4, everything finished saved (a "
        "reference's epoch is expected to take as long as its last one, a "
        "cell as long as the longest like it in the JSON)",
    )
    args = parser.parse_args(argv)
    if not args.dry_run and not args.cifar_dir:
        parser.error(
            "--cifar-dir is required to run steps (the folder of "
            "../shared/data/cifar10-jpeg); --dry-run needs none"
        )
    args.cifar_dir = args.cifar_dir or ""
    return args


def main(argv=None):
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
