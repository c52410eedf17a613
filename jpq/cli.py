"""The ``jpq`` command: a thin dispatcher over the Hydra app and the report tools.

::

    jpq search [hydra overrides]          one run (or a sweep with -m), see conf/config.yaml
    jpq cost [overrides] [bits=8] [run=DIR] [format=table|json]
    jpq plot-pareto DIR [--x METRIC] [--y COLUMN] [--group-by COLUMN]
    jpq export RUN_DIR [--no-verify] [--no-onnx] [--max-samples N] [--target torch|c]
    jpq front DIR [--metric size_kb] [--method joint] [--max-ratio 2] [--points 8] [-- overrides]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jpq.errors import JpqError

USAGE = """usage: jpq <command> [args]

commands:
  search       run warmup -> joint search -> fine-tune (Hydra overrides; -m for a sweep)
  cost         cost of a seed network at a uniform precision, or of a finished run (run=DIR)
  plot-pareto  collect every result.json under a folder: pareto.csv, plots and the front
  export       a finished run as a pruned, reordered PyTorch/ONNX model + packed integer weights,
               or (--target c) as integer-only C99, compiled and verified bit-exact
  front        fill the widest cost gaps of a sweep's front with budget-mode points (new jobs in DIR)

examples:
  jpq search dataset=cifar10 model=resnet8 cost=ne16
  jpq search -m strength=0.1,1,10
  jpq cost model=resnet8 dataset=cifar10 bits=8 format=json
  jpq plot-pareto outputs/
  jpq export outputs/runs/<time>
  jpq export outputs/runs/<time> --target c
"""


COST_USAGE = """usage: jpq cost [search overrides: model=... dataset=...] [bits=2|4|8] [format=table|json]
       jpq cost run=RUN_DIR [format=table|json]

Every cost (size, BitOps, MPIC cycles and energy, NE16 cycles) per layer and in total: of the seed
network at a uniform precision (weights and activations at bits, default 8), or of a finished run's
searched network.
"""


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _hydra_message(e: Exception) -> str:
    """Hydra's multi-line composition errors as one line."""
    from hydra.errors import MissingConfigException

    text = str(e).strip()
    if isinstance(e, MissingConfigException) and "Available options in" in text:
        head, _, rest = text.partition("\n\nAvailable options in")
        rest = rest.split("\nConfig search path:")[0]
        options = [ln.strip() for ln in rest.split("\n")[1:] if ln.startswith("\t")]
        return f"{head.strip()}; available: {', '.join(options)}"
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    msg = lines[0].rstrip(".") if lines else type(e).__name__
    if e.__cause__ is not None and str(e.__cause__).strip():
        msg += ": " + str(e.__cause__).strip().split("\n")[0].strip()
    if len(lines) > 1 and lines[1].startswith("To append"):
        msg += f" ({lines[1][0].lower()}{lines[1][1:]})"
    return msg


def compose_config(overrides: list[str], *, hydra_config: bool = False):  # noqa: ANN202 - DictConfig
    """The config ``jpq search`` would run with these overrides (``hydra_config``: with its hydra node)."""
    from hydra import compose, initialize_config_dir

    from jpq.config import conf_dir, register_schema

    register_schema()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3", job_name="jpq"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=hydra_config)


def _parser():  # noqa: ANN202 - Hydra's OverridesParser
    """Hydra's override parser with jpq's config loader (so ``glob(...)`` choice sweeps expand)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from jpq.config import conf_dir

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(conf_dir()))
    return OverridesParser.create(config_loader=loader)


def sweep_jobs(overrides: list[str], *, multirun: bool) -> list[list[str]]:
    """The override list of every job Hydra would launch for these command-line overrides.

    A sweep is the cartesian product of the config's ``hydra.sweeper.params`` (an ``experiment`` may set
    them) and the command line's sweeps (comma lists, ``range(...)``, ``choice(...)``, ``glob(...)``), the
    command line winning for a key set in both — what Hydra's basic sweeper does. ``hydra.*`` overrides
    are left out (they do not change a job's config). Raises ValueError for a sweep without ``-m``.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    plain = [a for a in overrides if not a.lstrip("+~").startswith("hydra")]
    parser = _parser()
    parsed = parser.parse_overrides(plain)
    swept = [text for text, o in zip(plain, parsed, strict=True) if o.is_sweep_override()]
    if swept and not multirun:
        raise ValueError(f"{swept[0]}: a comma-separated value is a sweep; add -m to sweep it, "
                         "or pass a list as key=[a,b]")
    if not multirun:
        return [plain]
    fixed = [text for text, o in zip(plain, parsed, strict=True) if not o.is_sweep_override()]
    params = compose_config(fixed, hydra_config=True).hydra.sweeper.get("params") or {}
    config_sweeps = [f"{k}={v}" for k, v in params.items() if not str(k).lstrip("+~").startswith("hydra")]
    jobs = BasicSweeper.split_arguments(parser.parse_overrides(config_sweeps + plain), None)[0]
    return [list(job) for job in jobs]


def _precheck(argv: list[str]) -> str | None:
    """Compose every job of the command line and check it before Hydra launches anything.

    A sweep is expanded in full (:func:`sweep_jobs`), and every job is composed, validated, its seed
    network and cost model built and the cost model checked against its precisions, so a bad value in
    the last job stops the sweep before the first one trains. Returns the one-line error, or None when
    all is well (and when the command line holds Hydra flags other than ``-m``, which Hydra handles).
    """
    from jpq.pipeline import check_config
    from jpq.quant import native

    flags = [a for a in argv if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags):
        return None
    try:
        jobs = sweep_jobs([a for a in argv if not a.startswith("-")], multirun=bool(flags))
    except ValueError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - any parse or sweep error is the user's input
        return _hydra_message(e)
    problem = None
    for job in jobs:
        try:
            cfg = compose_config(job)
        except Exception as e:  # noqa: BLE001 - Hydra/OmegaConf errors: the user's input
            problem = _hydra_message(e)
            break
        try:
            check_config(cfg, wait=False)  # the kernels compile meanwhile, on another core
        except JpqError as e:
            problem = f"{e} (job {' '.join(job)})" if len(jobs) > 1 else str(e)
            break
    try:
        native.join()
    except JpqError as e:
        problem = problem or str(e)
    return problem


def _search(argv: list[str]) -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    from jpq.config import conf_dir, register_schema

    _fork_workers_from_server(argv)  # first: the server imports PyTorch while this process does
    register_schema()
    problem = _precheck(argv)
    if problem is not None:
        return _fail(problem)

    @hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
    def app(cfg: DictConfig) -> None:
        from jpq.pipeline import run

        try:
            run(cfg, HydraConfig.get().runtime.output_dir)
        except JpqError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    sys.argv = ["jpq search", *argv]
    app()
    _stop_idle_workers()
    return 0


# what every job needs, imported once by the process the joblib launcher's workers fork from
WORKER_PRELOAD = ("jpq.pipeline", "jpq.pareto.plot")


def _fork_workers_from_server(argv: list[str]) -> None:
    """Under the joblib launcher (on Linux), the sweep's worker processes fork from a server process that
    has imported PyTorch and jpq (:data:`WORKER_PRELOAD`), instead of each starting a fresh interpreter
    that imports them (the first jobs started about 1.5 s later). The server starts now, so that its
    imports run on the other core while this process imports PyTorch and checks the jobs.

    The server runs no PyTorch op: a process forked after OpenMP ran a parallel region hangs at its own
    first one, which is why the workers must not fork from this process (its checks run ops). Nothing
    changes without ``-m`` and ``hydra/launcher=joblib`` on the command line, or with
    ``hydra.launcher.n_jobs=1`` (joblib then runs the jobs in this process); a joblib launcher chosen in
    a config file starts its workers as joblib does.
    """
    if (
        sys.platform != "linux"
        or not any(a in ("-m", "--multirun") for a in argv)
        or "hydra/launcher=joblib" not in argv
        or "hydra.launcher.n_jobs=1" in argv
    ):
        return
    import multiprocessing
    from multiprocessing import forkserver

    from joblib.externals.loky.backend import context

    multiprocessing.get_context("forkserver").set_forkserver_preload(list(WORKER_PRELOAD))
    context.set_start_method("forkserver", force=True)
    forkserver.ensure_running()


def _stop_idle_workers() -> None:
    """Stop the joblib launcher's worker processes once the sweep is done (they are idle): otherwise
    the interpreter's exit waits about a second for each to wind down."""
    loky = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(loky, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=False, kill_workers=True)


def _cost(argv: list[str]) -> int:
    """``jpq cost``: per-layer table and totals under every cost model."""
    from rich.console import Console
    from rich.table import Table

    from jpq.cost import evaluate_all, per_layer_table

    if any(a in ("-h", "--help") for a in argv):
        print(COST_USAGE)
        return 0
    unknown = [a for a in argv if a.startswith("-") or "=" not in a]
    if unknown:
        return _fail(f"jpq cost: unknown option {unknown[0]!r} (options are key=value; see jpq cost --help)")
    own = ("bits", "run", "format")
    extra = {k: v for k, _, v in (a.partition("=") for a in argv if a.split("=")[0] in own)}
    overrides = [a for a in argv if a.split("=")[0] not in own]
    fmt = extra.get("format", "table")
    if fmt not in ("table", "json"):
        return _fail(f"format={fmt}: choose table or json")
    if "run" in extra:
        from jpq.export.load import load_run

        if overrides or "bits" in extra:
            return _fail(f"run={extra['run']}: a finished run's cost takes no other options, got {overrides}")
        net = load_run(Path(extra["run"]))
        specs = net.layer_specs(fresh=True)
    else:
        from jpq.build import seed_specs

        try:
            cfg = compose_config(overrides)
        except Exception as e:  # noqa: BLE001 - Hydra/OmegaConf errors: the user's input
            return _fail(_hydra_message(e))
        try:
            bits = int(extra.get("bits", "8"))
        except ValueError:
            return _fail(f"bits={extra['bits']} is not a number")
        if bits not in (2, 4, 8):
            return _fail(f"bits={bits}: choose 2, 4 or 8")
        specs = seed_specs(cfg, bits)
    totals = evaluate_all(specs)
    layers = per_layer_table(specs)
    if fmt == "json":
        keys = ("size_bits", "size_kb", "bitops", "mpic_cycles", "mpic_energy_uj", "ne16_cycles")
        print(json.dumps({**{k: totals[k] for k in keys}, "layers": layers}))
        return 0
    console = Console()
    t = Table(title="per-layer cost")
    cols = list(layers[0].keys())
    for c in cols:
        t.add_column(c, justify="left" if c in ("name", "op") else "right")
    for row in layers:
        t.add_row(*(f"{row[c]:,.0f}" if isinstance(row[c], float) else str(row[c]) for c in cols))
    console.print(t)
    s = Table(title="totals")
    for k in totals:
        s.add_column(k, justify="right")
    s.add_row(
        *(f"{v:,.3f}" if k in ("size_kb", "mpic_energy_uj") else f"{v:,.0f}" for k, v in totals.items())
    )
    console.print(s)
    return 0


def _export(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="jpq export",
        description="Export a finished run as a real small model: "
        "pruned, channel-reordered PyTorch + ONNX + bit-packed integer weights",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--no-verify", action="store_true", help="skip the verification against the run")
    p.add_argument("--no-onnx", action="store_true", help="do not write model.onnx")
    p.add_argument("--max-samples", type=int, default=None, help="verify on at most this many test samples")
    p.add_argument(
        "--target",
        choices=("torch", "c"),
        default="torch",
        help="torch: PyTorch/ONNX/packed weights (default); c: integer-only C99 in export/c/, compiled "
        "and checked bit-exact",
    )
    a = p.parse_args(argv)
    if a.target == "c":
        if a.no_verify:
            return _fail("--target c always compiles and verifies the C code; drop --no-verify")
        from jpq.export.deploy import export_run_c

        rec = export_run_c(a.run_dir, max_samples=a.max_samples)
        if not rec["ok"]:
            out = a.run_dir / "export" / "c"
            return _fail(f"C export of {a.run_dir} written to {out} but a verification check failed")
        return 0
    from jpq.export import export_run

    rec = export_run(a.run_dir, verify=not a.no_verify, onnx=not a.no_onnx, max_samples=a.max_samples)
    if not rec.get("ok", True):
        return _fail(
            f"export of {a.run_dir} written to {a.run_dir / 'export'} but a verification check failed"
        )
    return 0


def _plot_pareto(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="jpq plot-pareto", description="Pareto fronts of every run under DIR")
    p.add_argument("dir", type=Path)
    p.add_argument(
        "--x",
        default=None,
        help="cost metric: size_kb | bitops | mpic_cycles | ne16_cycles (default: one figure per metric)",
    )
    p.add_argument("--y", default="final_test_acc", help="accuracy column (default final_test_acc)")
    p.add_argument("--group-by", default="method", help="one front per value of this column (default method)")
    a = p.parse_args(argv)
    from jpq.pareto.report import pareto_report

    pareto_report(a.dir, x=a.x, y=a.y, group_by=a.group_by)
    return 0


def _front(argv: list[str]) -> int:
    own, overrides = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(prog="jpq front", description="Add budget-mode points into the widest "
                                "cost gaps of a method's Pareto front; arguments after -- go to jpq search")
    p.add_argument("dir", type=Path)
    p.add_argument("--metric", default="size_kb", help="size_kb | ne16_cycles | mpic_cycles | bitops")
    p.add_argument("--method", default="joint", help="the method whose front is filled (default joint)")
    p.add_argument("--y", default="final_test_acc", help="accuracy column (default final_test_acc)")
    p.add_argument("--max-ratio", type=float, default=2.0, help="widest cost ratio allowed (default 2)")
    p.add_argument("--points", type=int, default=8, help="new points at most (default 8)")
    p.add_argument("--per-round", type=int, default=4, help="new points per search round (default 4)")
    a = p.parse_args(own)
    from jpq.pareto.fill import fill_front

    res = fill_front(a.dir, overrides, metric=a.metric, method=a.method, y=a.y, max_ratio=a.max_ratio,
                     points=a.points, per_round=a.per_round)
    left = ", ".join(f"{g.lo:g}-{g.hi:g} ({g.ratio:.2f}x)" for g in res.remaining) or "none"
    print(f"{len(res.added)} point(s) added in {res.rounds} round(s); "
          f"gaps wider than {a.max_ratio:g}x: {left}")
    return 0


COMMANDS = {
    "search": _search, "cost": _cost, "plot-pareto": _plot_pareto, "export": _export, "front": _front,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return _fail(f"unknown command {cmd!r}")
    try:
        return COMMANDS[cmd](rest) or 0
    except JpqError as e:
        return _fail(str(e))
    except KeyboardInterrupt:  # every file is written atomically: nothing half-written is left behind
        print("interrupted; rerun the same command to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
