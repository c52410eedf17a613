"""The ``jpq`` command end to end, as a user runs it (subprocesses in a temporary folder)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from jpq.cli import compose_config

SMOKE = ["trainer=smoke", "progress=false"]


def jpq(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "jpq.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"jpq {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-strength smoke sweep shared by the tests below (the path-valued keys stay out of folder names)."""
    cwd = tmp_path_factory.mktemp("sweep")
    paths = [f"data_dir={cwd / 'data'}", f"cache_dir={cwd / 'outputs' / '.cache'}"]
    proc = jpq("search", "-m", "strength=0.5,4", *SMOKE, *paths, "hydra.sweep.dir=outputs/sw", cwd=cwd)
    (cwd / "log.txt").write_text(proc.stdout + proc.stderr)
    return cwd


def test_sweep_writes_results_and_reuses_warmup(sweep: Path) -> None:
    log = (sweep / "log.txt").read_text()
    assert log.count("cache miss") == 1 and log.count("cache hit") == 1
    runs = sorted((sweep / "outputs" / "sw").glob("*/result.json"))
    assert [p.parent.name for p in runs] == ["strength=0.5,trainer=smoke", "strength=4,trainer=smoke"]
    rec = json.loads(runs[0].read_text())
    assert rec["dataset"] == "digits" and rec["method"] == "joint" and rec["cost"] == "size"
    assert rec["strength"] == 0.5 and rec["w_bits"] == "0,2,4,8" and rec["a_bits"] == "8"
    for k in (
        "final_test_acc",
        "warmup_test_acc",
        "size_bits",
        "size_kb",
        "bitops",
        "mpic_cycles",
        "mpic_energy_uj",
        "ne16_cycles",
        "wall_s_warmup",
        "wall_s_search",
        "wall_s_finetune",
    ):
        assert isinstance(rec[k], float), k
    assert 0.0 <= rec["final_test_acc"] <= 100.0
    assert rec["size_kb"] == pytest.approx(rec["size_bits"] / 8000)
    assert rec["size_bits"] <= 15248 * 8  # never larger than the 8-bit seed
    row = pd.read_csv(runs[0].parent / "result.csv")
    assert len(row) == 1 and row.loc[0, "strength"] == 0.5
    arch = json.loads((runs[0].parent / "arch.json").read_text())
    assert [layer["name"] for layer in arch["layers"]] == ["conv1", "conv2", "conv3", "fc"]
    for layer in arch["layers"]:
        assert sum(layer["w_bits_counts"].values()) == layer["c_out"]
        assert layer["kept"] == layer["c_out"] - layer["w_bits_counts"]["0"]
    hist = pd.read_csv(runs[0].parent / "history.csv")
    assert set(hist["phase"]) == {"warmup", "search", "finetune"}
    assert {"train_loss", "val_acc", "temperature", "expected_cost", "discrete_cost"} <= set(hist.columns)
    assert hist.loc[hist.phase == "search", "temperature"].iloc[0] == pytest.approx(0.9)  # default decay


def test_rerun_skips_finished_jobs(sweep: Path) -> None:
    before = (sweep / "outputs/sw/strength=4,trainer=smoke/result.json").stat().st_mtime_ns
    proc = jpq("search", "-m", "strength=0.5,4", *SMOKE, "hydra.sweep.dir=outputs/sw", cwd=sweep)
    assert (proc.stdout + proc.stderr).count("already finished") == 2
    assert (sweep / "outputs/sw/strength=4,trainer=smoke/result.json").stat().st_mtime_ns == before


def test_plot_pareto(sweep: Path) -> None:
    proc = jpq("plot-pareto", "outputs/sw", cwd=sweep)
    out = sweep / "outputs" / "sw"
    assert (out / "pareto.png").stat().st_size > 1000
    df = pd.read_csv(out / "pareto.csv")
    assert len(df) == 2 and "on_front" in df.columns and df["on_front"].any()
    assert "front" in (proc.stdout + proc.stderr).lower()


def test_cost_of_a_finished_run(sweep: Path) -> None:
    run = sweep / "outputs/sw/strength=4,trainer=smoke"
    proc = jpq("cost", f"run={run}", "format=json", cwd=sweep)
    totals = json.loads(proc.stdout)
    rec = json.loads((run / "result.json").read_text())
    assert totals["size_bits"] == pytest.approx(rec["size_bits"])
    assert totals["ne16_cycles"] == pytest.approx(rec["ne16_cycles"])


def test_cost_of_the_digits_seed(tmp_path: Path) -> None:
    out = json.loads(jpq("cost", "bits=8", "format=json", cwd=tmp_path).stdout)
    assert out["size_bits"] == 15248 * 8 and out["size_kb"] == pytest.approx(15.248)
    assert [row["name"] for row in out["layers"]] == ["conv1", "conv2", "conv3", "fc"]
    assert json.loads(jpq("cost", "bits=2", "format=json", cwd=tmp_path).stdout)["size_bits"] == 15248 * 2


@pytest.mark.parametrize(
    "args,message",
    [
        (["strength=-1"], "strength must be a finite number >= 0, got -1.0"),
        (["-m", "strength=1,-1"], "strength must be a finite number >= 0, got -1.0"),  # stops the 1st job too
        (["-m", "cost=size,nope"], "Could not find 'cost/nope'; available: bitops, mpic, ne16, size"),
    ],
)
def test_bad_input_fails_before_training(tmp_path: Path, args: list[str], message: str) -> None:
    """As a user sees it (a subprocess); the whole catalogue is tests/test_bad_input.py."""
    proc = jpq("search", *SMOKE, *args, "hydra.run.dir=run", "hydra.sweep.dir=sweep", cwd=tmp_path,
               check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()  # nothing was started


def test_missing_compiler_stops_a_sweep_before_it_starts(tmp_path: Path) -> None:
    """The fused step's kernels are built while the pre-check composes the jobs; a missing compiler is
    one line and nothing is launched."""
    env = {**os.environ, "CC": "no-such-cc", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "jpq.cli", "search", "-m", "strength=0.5,4", *SMOKE,
                           "hydra.sweep.dir=sweep"], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: search_step=fused builds its CPU kernels with a C compiler and "
                                   "none is on PATH (install gcc, set CC, or use trainer.search_step=eager)")
    assert not (tmp_path / "sweep").exists()


def test_unknown_command_and_help(tmp_path: Path) -> None:
    proc = jpq("frobnicate", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "unknown command" in proc.stderr
    assert "plot-pareto" in jpq("--help", cwd=tmp_path).stdout


@pytest.mark.parametrize("method", ["pit", "pit_mixprec", "mixprec", "edmips"])
def test_other_methods_run(tmp_path: Path, method: str) -> None:
    jpq("search", *SMOKE, f"method={method}", "hydra.run.dir=run", cwd=tmp_path)
    rec = json.loads((tmp_path / "run" / "result.json").read_text())
    arch = json.loads((tmp_path / "run" / "arch.json").read_text())
    assert rec["method"] == method
    if method == "pit":  # float network: 32-bit size, no integer-hardware latency
        kept = {layer["name"]: layer["kept"] for layer in arch["layers"]}
        assert rec["size_bits"] % 32 == 0 and rec["ne16_cycles"] is None  # NaN is written as null
        assert (
            all(set(layer["w_bits_counts"]) == {"0", "32"} for layer in arch["layers"]) and kept["fc"] == 10
        )
        assert (tmp_path / "run" / "checkpoints" / "pit_model.pt").exists()
    else:  # no 0-bit channels: pruning is off for these
        assert all(layer["w_bits_counts"]["0"] == 0 for layer in arch["layers"])
    if method == "edmips":  # one precision per layer
        assert all(sum(1 for v in layer["w_bits_counts"].values() if v) == 1 for layer in arch["layers"])
    if method == "pit_mixprec":
        proc = jpq("export", "run", "--max-samples", "64", cwd=tmp_path)
        assert "weight bits vs run size_bits" in proc.stdout + proc.stderr
        assert (tmp_path / "run" / "export" / "model.onnx").exists()


def test_export_refuses_unfinished_run(tmp_path: Path) -> None:
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / ".hydra" / "config.yaml").write_text("method: {name: joint}\n")
    proc = jpq("export", "run", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no finished fine-tune" in proc.stderr


def test_cost_golden_resnet8_json(tmp_path: Path) -> None:
    """docs/method.md §5.6: ResNet-8 (CIFAR-10 input) at w8a8 through the command line."""
    out = json.loads(
        jpq("cost", "model=resnet8", "dataset=cifar10", "bits=8", "format=json", cwd=tmp_path).stdout
    )
    assert out["size_bits"] == 618_880 and out["size_kb"] == pytest.approx(77.36)
    assert round(out["mpic_cycles"]) == 5_953_158 and out["ne16_cycles"] == 155_241
    assert [round(r["ne16_cycles"]) for r in out["layers"]] == [
        25531,
        25531,
        25531,
        12780,
        23616,
        4284,
        11808,
        22644,
        3312,
        204,
    ]
    w4 = json.loads(
        jpq("cost", "model=resnet8", "dataset=cifar10", "bits=4", "format=json", cwd=tmp_path).stdout
    )
    assert w4["size_kb"] == pytest.approx(38.68) and round(w4["mpic_cycles"]) == 5_435_492
    assert w4["ne16_cycles"] == 104_361


def test_parallel_sweep_trains_warmup_once(tmp_path: Path) -> None:
    proc = jpq(
        "search",
        "-m",
        "strength=0.5,1,2",
        *SMOKE,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweep.dir=sw",
        cwd=tmp_path,
    )
    log = proc.stdout + proc.stderr
    assert len(list((tmp_path / "sw").glob("*/result.json"))) == 3
    assert log.count("cache miss") == 1 and log.count("cache hit") == 2
    assert log.count("(joblib n_jobs=2); device: cpu") == 3  # each job its share of the cores


WORKER_CHECK = """
import os, sys
import torch
from joblib import Parallel, delayed
from jpq.cli import _fork_workers_from_server

def job(i):
    preloaded = "jpq.pipeline" in sys.modules and "jpq.pareto.plot" in sys.modules
    torch.set_num_threads(2)  # OpenMP's pool in a process forked after it ran would hang here
    a = torch.ones(600, 600)
    total = float((a @ a).sum())
    return preloaded, os.getppid() != MAIN, total

MAIN = os.getpid()
_fork_workers_from_server(sys.argv[1:])
torch.set_num_threads(2)
a = torch.ones(600, 600)
assert float((a @ a).sum()) == 600.0 ** 3  # this process runs OpenMP before the workers start
print(Parallel(n_jobs=2, backend="loky")(delayed(job)(i) for i in range(2)))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the workers fork from a server process on Linux only")
def test_joblib_workers_fork_from_a_server_that_imported_jpq(tmp_path: Path) -> None:
    """Under the joblib launcher the workers fork from a server process that imported PyTorch and jpq and
    ran no op: they start with jpq imported, and their own thread pools work although the process that
    launched them ran a parallel op (a process forked from it would hang at its first one)."""
    def check(*argv: str) -> str:
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER_CHECK, *argv], cwd=tmp_path, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the workers too
            proc.communicate()
            pytest.fail("the workers hung at their first parallel op")
        assert proc.returncode == 0, err[-2000:]
        return out.strip()

    assert check("-m", "hydra/launcher=joblib") == f"[(True, True, {600.0**3}), (True, True, {600.0**3})]"
    # without the joblib launcher on the command line the workers start as joblib starts them
    assert check("-m") == f"[(False, False, {600.0**3}), (False, False, {600.0**3})]"


@pytest.mark.parametrize(
    "overrides,target",
    [
        ([], "jpq.models.digits.DigitsCNN"),
        (["dataset=cifar10"], "jpq.models.resnet8.ResNet8"),
        (["dataset=gsc"], "jpq.models.dscnn.DSCNN"),
        (["dataset=tiny_imagenet"], "jpq.models.resnet18.ResNet18"),
        (["dataset=cifar10", "model=dscnn"], "jpq.models.dscnn.DSCNN"),  # an explicit model wins
    ],
)
def test_the_dataset_picks_its_seed_network(overrides: list[str], target: str) -> None:
    """`jpq search dataset=cifar10 cost=ne16` searches ResNet-8, the dataset's seed, not the default CNN."""
    assert compose_config([*overrides, "cost=ne16"]).model._target_ == target


@pytest.mark.parametrize("experiment", ["compare_digits", "compare_cifar10"])
def test_comparison_presets_compose(experiment: str) -> None:
    """Every point a comparison preset sweeps exists and passes the start-up checks."""
    from jpq.pipeline import check_config

    base = compose_config([f"experiment={experiment}"], hydra_config=True)
    methods = set()
    for v in str(base.hydra.sweeper.params["+variant"]).split(","):
        cfg = compose_config([f"experiment={experiment}", f"+variant={v}"])
        check_config(cfg)
        methods.add(cfg.method.name)
    assert {"joint", "mixprec", "fixed", "pit_mixprec"} <= methods


def test_init_from_is_checked_before_the_data_and_used(tmp_path: Path) -> None:
    """A bad warmup.init_from is reported before the dataset is looked for; a good one seeds the run."""
    import torch

    from jpq.models.digits import DigitsCNN

    (tmp_path / "bad.pt").write_text("not a checkpoint")
    proc = jpq("search", *SMOKE, "dataset=cifar10", f"data_dir={tmp_path / 'nodata'}",
               f"warmup.init_from={tmp_path / 'bad.pt'}", "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "not a checkpoint written by torch.save" in proc.stderr
    assert "CIFAR-10 not found" not in proc.stderr
    torch.save(DigitsCNN().state_dict(), tmp_path / "seed.pt")
    jpq("search", *SMOKE, f"warmup.init_from={tmp_path / 'seed.pt'}", "trainer.warmup.epochs=0",
        "hydra.run.dir=ok", cwd=tmp_path)
    rec = json.loads((tmp_path / "ok" / "result.json").read_text())
    assert rec["size_bits"] > 0 and not (tmp_path / "outputs" / ".cache").exists()  # no warmup trained
