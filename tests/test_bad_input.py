"""The catalogue of bad input: every value that cannot work stops with exit code 2 and exactly one
``error:`` line before anything is trained or written.

The commands run in-process (``jpq.cli.main``) in an empty folder; ``pipeline.run`` is replaced by a
function that fails the test, so a case that slipped past the checks cannot start training.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import jpq.pipeline
from jpq.cli import main

OPT = "trainer.search.optim"

# (id, argv[, a part of the message]); "{file}" is replaced by the path of an existing plain file,
# "{dir}" by an empty folder
CASES: list[tuple[str, list[str]] | tuple[str, list[str], str]] = [
    # the regularizer and the seed
    ("strength-nan", ["search", "strength=nan"], "strength must be a finite number >= 0, got nan"),
    ("strength-inf", ["search", "strength=inf"]),
    ("strength-negative", ["search", "strength=-1"]),
    ("strength-text", ["search", "strength=abc"], "could not be converted to Float"),
    ("strength-typo", ["search", "strenght=1"], "strenght"),
    ("strength-list-without-m", ["search", "strength=1,2"], "add -m to sweep it"),
    ("seed-negative", ["search", "seed=-1"]),
    ("seed-too-large", ["search", "seed=99999999999"], "seed must be"),
    # phases of the trainer
    ("eval-batch-0", ["search", "trainer.finetune.eval_batch_size=0"]),
    ("batch-0", ["search", "trainer.search.batch_size=0"]),
    ("epochs-negative", ["search", "trainer.warmup.epochs=-1"]),
    ("patience-0", ["search", "trainer.search.patience=0"]),
    ("early-stop-start", ["search", "trainer.search.early_stop_start=-5"]),
    ("max-batches-0", ["search", "trainer.search.max_batches=0"]),
    ("monitor", ["search", "trainer.search.monitor=acc"]),
    ("strength-schedule", ["search", "trainer.strength_schedule=fast"]),
    ("phases-empty", ["search", "phases=[]"]),
    ("phases-unknown", ["search", "phases=[warmup,train]"]),
    # optimizers and schedules
    ("lr-0", ["search", f"{OPT}.lr=0"]),
    ("lr-nan", ["search", f"{OPT}.lr=nan"]),
    ("weight-decay-negative", ["search", f"{OPT}.weight_decay=-1"]),
    ("momentum-1", ["search", f"{OPT}.momentum=1"]),
    ("gamma-0", ["search", f"{OPT}.gamma=0"]),
    ("gamma-above-1", ["search", f"{OPT}.gamma=1.5"]),
    ("step-size-0", ["search", f"{OPT}.scheduler=step", f"{OPT}.step_size=0"]),
    (
        "milestones-unsorted",
        ["search", f"{OPT}.scheduler=multistep", f"{OPT}.milestones=[5,2]", f"{OPT}.factors=[0.5,0.5]"],
    ),
    ("factors-length", ["search", f"{OPT}.scheduler=multistep", f"{OPT}.factors=[0.5]"]),
    ("factor-0", ["search", f"{OPT}.scheduler=multistep", f"{OPT}.milestones=[2]", f"{OPT}.factors=[0]"]),
    ("optimizer-name", ["search", f"{OPT}.name=rmsprop"]),
    ("scheduler-name", ["search", f"{OPT}.scheduler=linear"]),
    ("arch-lr", ["search", "trainer.arch_optim.lr=-1"]),
    # the dataset
    ("limit-train-0", ["search", "dataset.limit_train=0"]),
    ("val-size-0", ["search", "dataset.val_size=0"]),
    ("num-classes-1", ["search", "dataset.num_classes=1"]),
    ("input-shape-0", ["search", "dataset.input_shape=[0,8,8]"]),
    ("dataset-unknown", ["search", "dataset=mnist"], "Could not find 'dataset/mnist'"),
    ("data-dir-file", ["search", "data_dir={file}"], "is a file, not a folder"),
    ("cache-dir-file", ["search", "cache_dir={file}"]),
    # the method, the sampler, the cost model, the seed network
    (
        "fixed-two-widths",
        ["search", "method=fixed", "method.w_bits=[2,4]"],
        "method=fixed trains one precision",
    ),
    ("fixed-two-a-widths", ["search", "method=fixed", "method.a_bits=[4,8]"]),
    ("w-bits-3", ["search", "method.w_bits=[0,3,8]"], "3 bits is not supported"),
    ("w-bits-only-0", ["search", "method.w_bits=[0]"]),
    ("a-bits-0", ["search", "method.a_bits=[0,8]"], "0 bits is not allowed for activations"),
    ("a-bits-empty", ["search", "method.a_bits=[]"]),
    ("w-bits-empty", ["search", "method.w_bits=[]"], "method.w_bits is empty"),
    ("w-bits-text", ["search", "method.w_bits=[2,x]"], "'x' is not a number"),
    ("cost-precision", ["search", "cost=ne16", "method.a_bits=[4,8]"], "cannot model activation precision"),
    ("method-name", ["search", "method.name=foo"]),
    ("method-unknown", ["search", "method=foo"]),
    ("pit-strength", ["search", "method=pit", "method.pit_strength=-1"]),
    ("pit-lr", ["search", "method=pit", "method.pit_arch_lr=0"]),
    ("sampler-unknown", ["search", "sampler=foo"]),
    ("temperature-0", ["search", "sampler.temperature=0"]),
    ("decay-0", ["search", "sampler.decay=0"]),
    ("decay-above-1", ["search", "sampler.decay=1.5"]),
    ("cost-unknown", ["search", "cost=foo"], "Could not find 'cost/foo'"),
    ("cost-target", ["search", "cost._target_=nonexistent.Cost"]),
    ("cost-target-not-a-cost", ["search", "cost._target_=collections.OrderedDict"]),
    ("cost-option", ["search", "+cost.foo=1"], "unexpected keyword argument 'foo'"),
    ("model-target", ["search", "model._target_=nonexistent.Net"]),
    ("target-negative", ["search", "target.size_kb=-1"], "target.size_kb must be a positive number"),
    ("target-nan", ["search", "target.ne16_cycles=nan"], "must be a positive number"),
    ("target-fraction", ["search", "target.fraction=2"], "in (0, 1]"),
    ("two-targets", ["search", "target.size_kb=8", "target.fraction=0.5"], "set one budget target"),
    ("target-fixed", ["search", "method=fixed", "target.size_kb=8"], "method=fixed does not search"),
    ("target-start", ["search", "target.size_kb=8", "target.start=0"],
     "target.start must be a finite number > 0"),
    # an unreachable target: the floor (every group at its cheapest assignment) is costed on the seed
    # alone, no data loaded (gsc has none here); DS-CNN's NE16 floor is 26413 cycles, 12.9 % of 8 bits
    (
        "target-below-floor",
        ["search", "dataset=gsc", "target.ne16_cycles=20000"],
        "target.ne16_cycles=20000 is below the cheapest network the search can reach (ne16_cycles 26413,",
    ),
    ("target-fraction-below-floor", ["search", "cost=ne16", "target.fraction=0.1"], "target.fraction=0.1 ("),
    ("target-mixprec-below-floor", ["search", "method=mixprec", "target.fraction=0.2"],
     "is below the cheapest network the search can reach"),
    ("device", ["search", "device=tpu"]),
    ("device-gpu", ["search", "device=gpu"], "device='gpu': choose one of auto, cpu, cuda, cuda:N"),
    ("threads-0", ["search", "threads=0"], "threads=0: must be >= 1"),
    ("search-step", ["search", "trainer.search_step=fast"], "search_step='fast': choose fused or eager"),
    ("init-from-missing", ["search", "warmup.init_from=missing.pt"]),
    ("init-from-folder", ["search", "warmup.init_from={dir}"]),
    # sweeps: the bad job is the last one
    (
        "sweep-last-a-bits",
        ["search", "-m", "strength=1,2", "method.a_bits=[8],[3]"],
        "(job strength=1 method.a_bits=[3])",
    ),
    ("sweep-model-target", ["search", "-m", "model._target_=jpq.models.digits.DigitsCNN,nonexistent.Net"]),
    ("sweep-range", ["search", "-m", "seed=range(0,3)", "trainer.search.batch_size=range(-1,1)"]),
    ("sweep-choice", ["search", "-m", "sampler=choice(softmax,foo)"]),
    ("sweep-interval", ["search", "-m", "strength=interval(0,1)"]),
    (
        "sweep-cost-precision",
        ["search", "-m", "cost=size,ne16", "method.a_bits=[8],[4,8]"],
        "(job cost=ne16 method.a_bits=[4,8])",
    ),
    (
        "sweep-target-below-floor",
        ["search", "-m", "cost=ne16", "target.fraction=0.5,0.1"],
        "is below the cheapest network the search can reach (ne16_cycles",
    ),
    (
        "sweep-experiment-with-bad-value",
        ["search", "-m", "experiment=compare_digits", "seed=1,-1"],
        "seed must be",
    ),
    # the other commands
    ("cost-unknown-option", ["cost", "--foo"], "unknown option '--foo'"),
    ("cost-bare-word", ["cost", "resnet8"]),
    ("cost-bits", ["cost", "bits=3"]),
    ("cost-format", ["cost", "format=xml"]),
    ("cost-run-missing", ["cost", "run=nonexistent"]),
    ("cost-run-with-bits", ["cost", "run={dir}", "bits=4"]),
    ("cost-typo", ["cost", "modle=resnet8"]),
    ("export-missing", ["export", "nonexistent"]),
    ("export-not-a-run", ["export", "{dir}"]),
    ("plot-missing", ["plot-pareto", "nonexistent"]),
    ("unknown-command", ["frobnicate"]),
]


IDS = [c[0] for c in CASES]


def test_catalogue_size() -> None:
    assert len(CASES) >= 40 and len(set(IDS)) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_input_stops_in_one_line(
    case: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    name, argv, message = case[0], case[1], (case[2] if len(case) > 2 else "")
    (tmp_path / "a_file").write_text("not a folder\n")
    (tmp_path / "empty").mkdir()
    argv = [
        a.replace("{file}", str(tmp_path / "a_file")).replace("{dir}", str(tmp_path / "empty")) for a in argv
    ]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JPQ_DATA_DIR", str(tmp_path / "data"))

    def no_training(*_: object, **__: object) -> None:
        raise AssertionError(f"{name}: reached training")

    monkeypatch.setattr(jpq.pipeline, "run", no_training)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(argv)
    out, err = capsys.readouterr()
    usage = ("usage:", "  ", "commands:", "examples:")  # the usage text of an unknown command
    lines = [ln for ln in (err + out).splitlines() if ln.strip() and not ln.startswith(usage)]
    assert code == 2, (name, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (name, lines)
    assert message in lines[0], (name, lines[0])
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
