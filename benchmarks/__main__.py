"""`python -m benchmarks`: runs B1, B2, B3 and regenerates docs/benchmarks.md.

    python -m benchmarks --mnist-dir ../shared/data/mnist-t10k \\
        --out benchmarks/results [--quick] [--only b1,b2,b3]

B4 (CIFAR-10, `benchmarks/b4_cifar.py`) runs only when asked for, with
`--only b4 --cifar-dir ../shared/data/cifar10-jpeg`; it writes
`<out>/b4.json` (resumable) and the page's `## B4` section.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("b1", "b2", "b3", "b4")
DEFAULT_SECTIONS = ("b1", "b2", "b3")
PLOT_NAME = "benchmarks_accuracy_vs_flops.png"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="keras_guided benchmarks: B1 compression, B2 training "
        "overhead, B3 surgery and on-device speed.",
    )
    parser.add_argument(
        "--mnist-dir",
        default=None,
        help="directory holding the MNIST t10k idx files "
        "(default: scikit-learn digits)",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(ROOT, "benchmarks", "results"),
        help="output directory for results.json and "
        "results.md (default: benchmarks/results)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small grids, 1 seed, few epochs, small inputs: a few minutes",
    )
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_SECTIONS),
        help="comma-separated sections to run "
        "(default: b1,b2,b3; b4 needs --cifar-dir)",
    )
    parser.add_argument(
        "--cifar-dir",
        default=None,
        help="B4: directory holding cifar10_train.npz and cifar10_test.npz",
    )
    parser.add_argument(
        "--methods",
        default=None,
        help="comma-separated B1 methods (default: all)",
    )
    parser.add_argument(
        "--docs",
        default=os.path.join(ROOT, "docs", "benchmarks.md"),
        help="markdown file to regenerate; 'none' to skip "
        "(default: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="data split seed (default: 0)"
    )
    parser.add_argument(
        "--from-json",
        default=None,
        help="regenerate results.md, the plot and the docs "
        "page from an existing results.json instead "
        "of running",
    )
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(
            f"--only takes sections from {SECTIONS}; received {unknown}"
        )
    args.sections = sections
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from benchmarks import b1_budget
    from benchmarks import b2_overhead
    from benchmarks import b3_surgery
    from benchmarks import data as data_lib
    from benchmarks import report

    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
        results["regenerated"] = (
            "tables regenerated from results.json "
            "with `python -m benchmarks --from-json`"
        )
        _write_reports(results, args, results["mode"] == "quick")
        return results
    if "b4" in args.sections:
        _run_b4(args)
        args.sections = [s for s in args.sections if s != "b4"]
        if not args.sections:
            return None
    mode = "quick" if args.quick else "full"
    start = time.perf_counter()

    log = report.elapsed_log(start)

    data = data_lib.load(args.mnist_dir, seed=args.seed)
    command = report.command_line("benchmarks", argv, prefix="python -m")
    results = {
        "command": command,
        "mode": mode,
        "machine": report.machine(),
        "data": {
            "name": data["name"],
            "seed": args.seed,
            "split": [
                len(data["y_train"]),
                len(data["y_val"]),
                len(data["y_test"]),
            ],
        },
    }
    log(f"data {data['name']} {results['data']['split']}, mode {mode}")
    if "b1" in args.sections:
        methods = args.methods.split(",") if args.methods else None
        os.makedirs(args.out, exist_ok=True)
        results["b1"] = b1_budget.run(
            data, mode, log, methods, path=os.path.join(args.out, "b1.json")
        )
    if "b2" in args.sections:
        results["b2"] = b2_overhead.run(data, mode, log)
    if "b3" in args.sections:
        results["b3"] = b3_surgery.run(mode, log)
    results["seconds"] = time.perf_counter() - start

    os.makedirs(args.out, exist_ok=True)
    report.write_atomic(
        os.path.join(args.out, "results.json"),
        json.dumps(results, indent=1, default=_plain),
    )
    _write_reports(results, args, args.quick)
    log(
        f"wrote {args.out}/results.json, results.md"
        + ("" if args.docs == "none" else f" and {args.docs}")
    )
    return results


def _run_b4(args):
    """B4 in this process: the resumable grid, then its docs section."""
    from benchmarks import b4_cifar
    from benchmarks import b4_report

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "b4.json")
    argv = ["--json", path] + (["--quick"] if args.quick else [])
    if args.cifar_dir:
        argv += ["--cifar-dir", args.cifar_dir]
    results = b4_cifar.main(argv)
    if args.docs != "none":
        b4_report.write_docs(results, args.docs)
    return results


# Sections written by their own commands (B4: `benchmarks.b4_report`, B5:
# `benchmarks.b5_bert_latency --docs`, B6: `benchmarks.b6_report --docs`),
# kept when B1-B3 rewrite the page.
OWN_SECTIONS = ("## B4", "## B5", "## B6")


def _keep_own_sections(text, docs):
    """The page rewritten by B1-B3 keeps the B4 and B5 sections it had."""
    from benchmarks import b4_report

    if not os.path.exists(docs):
        return text
    with open(docs) as f:
        old = f.read()
    for heading in OWN_SECTIONS:
        start = old.find("\n" + heading)
        if start < 0:
            continue
        end = old.find("\n## ", start + 1)
        section = old[start + 1 :] if end < 0 else old[start + 1 : end + 1]
        text = b4_report.replace_section(text, section, heading=heading)
    return text


def _write_reports(results, args, quick):
    from benchmarks import report

    command = results["command"]
    plot_name = None
    if "b1" in results and args.docs != "none":
        plot_name = PLOT_NAME
        report.plot_b1(
            results["b1"],
            os.path.join(
                os.path.dirname(os.path.abspath(args.docs)), PLOT_NAME
            ),
        )
    text = report.markdown(results, command, quick, plot_name)
    os.makedirs(args.out, exist_ok=True)
    report.write_atomic(os.path.join(args.out, "results.md"), text)
    if args.docs != "none":
        report.write_atomic(args.docs, _keep_own_sections(text, args.docs))


def _plain(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    return str(value)


if __name__ == "__main__":
    main()
