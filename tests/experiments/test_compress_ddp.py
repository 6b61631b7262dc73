"""``netsqueeze compress --nproc 2``: data-parallel retraining end to end on the MNIST sample.

Each two-process run is a subprocess (the command itself spawns its two gloo ranks on
127.0.0.1) bounded by a timeout. A run whose rank 1 leaves mid-stage (the test hook
``NETSQUEEZE_DDP_EXIT_AT``) is resumed with ``--resume`` and must write the same file as a run
never interrupted; the resumed run is started by ``torchrun`` instead (the command then finds
its rank in the environment), so that both launchers are covered.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from netsqueeze.cli import main
from netsqueeze.experiments.pipeline import OUTPUTS
from netsqueeze.nn import distributed as ddp
from netsqueeze.nn.export import load_compressed

ROOT = Path(__file__).resolve().parents[2]

# 4,000 training images in batches of 200: 20 steps an epoch. Optimizer steps of a rank:
# train 1-30, retrain 1/2 31-60, retrain 2/2 61-90 (an epoch checkpoint after step 80),
# fine-tune 91-110.
RECIPE = """
name = "tiny-ddp"
[train]
iterations = 30
batch_size = 200
[prune]
sparsity = 0.8
steps = 2
[prune.retrain]
iterations = 30
batch_size = 200
lr = 0.0002
[share]
bits = 3
[finetune]
iterations = 20
batch_size = 200
"""
KILL_AT = "1:85"  # rank 1, in retrain 2/2, after its first epoch's checkpoint


def _args(recipe: Path, out: Path, *extra) -> list[str]:
    return ["compress", "--model", "lenet-300-100", "--recipe", str(recipe), "--dataset",
            "mnist-sample", "--device", "cpu", "-q", "-o", str(out), *extra]


def _command(argv: list[str], fault: str | None = None,
             torchrun: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                 ddp.FAULT_ENV):
        env.pop(name, None)
    if fault:
        env[ddp.FAULT_ENV] = fault
    launcher = [sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--nproc-per-node", str(torchrun),
                     "--master-addr", "127.0.0.1", "--master-port", str(ddp.free_port())]
    return subprocess.run([*launcher, "-m", "netsqueeze", *argv], check=False, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """--nproc 1 (in this process, one thread), --nproc 2, and --nproc 2 killed then resumed by
    torchrun."""
    tmp = tmp_path_factory.mktemp("ddp-compress")
    recipe = tmp / "tiny.toml"
    recipe.write_text(RECIPE)
    one, two, killed = tmp / "one", tmp / "two", tmp / "killed"
    # the closest one-process run: one torch thread, as each of the two ranks uses on 2 cores
    # (the thread count alone changes float32 sums, see docs/SCALING.md)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main.main(_args(recipe, one)) == 0
    finally:
        torch.set_num_threads(threads)
    done = _command(_args(recipe, two, "--nproc", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    dead = _command(_args(recipe, killed, "--nproc", "2"), fault=KILL_AT)
    state = sorted(p.name for p in (killed / ".state").iterdir())
    shutil.copytree(killed, tmp / "killed-copy")
    resumed = _command(_args(recipe, killed, "--resume"), torchrun=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {"one": one, "two": two, "killed": killed, "done": done, "dead": dead,
            "state_after_kill": state, "resumed": resumed, "copy": tmp / "killed-copy",
            "recipe": recipe}


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_two_processes_write_what_one_process_writes_and_the_file_decodes(runs):
    one, two = runs["one"], runs["two"]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert set(OUTPUTS) <= {p.name for p in two.iterdir()}
    assert not (two / ".state").exists()
    r1, r2 = _results(one), _results(two)
    assert r2["distributed"] == {"processes": 2, "backend": "gloo"} and "distributed" not in r1
    assert [s["stage"] for s in r2["stages"]] == [s["stage"] for s in r1["stages"]]
    assert "wrote" in runs["done"].stdout and "lenet-300-100: top-1 error" in runs["done"].stdout
    # the file decodes into the compressed network, bit for bit
    model = load_compressed(two / "model.nsq")
    model = model[0] if isinstance(model, tuple) else model
    plain = torch.load(two / "compressed.pt", weights_only=True)
    plain = plain.get("state_dict", plain)
    for name, t in model.state_dict().items():
        assert torch.equal(t, plain[name]), name
    # against one process on the same global batches: the same zeros at every stage and in the
    # file, the same number of shared values; the weights only within float32 rounding
    for s1, s2 in zip(r1["stages"], r2["stages"]):
        assert s1["nonzero"] == s2["nonzero"]
        l1, l2 = (s.get("train", {}).get("epoch_loss", []) for s in (s1, s2))
        assert len(l1) == len(l2) and l2 == pytest.approx(l1, rel=1e-4)
    m1 = load_compressed(one / "model.nsq")
    m1 = m1[0] if isinstance(m1, tuple) else m1
    for (name, a), b in zip(m1.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a == 0, b == 0), name
        assert a.unique().numel() == b.unique().numel(), name
        assert float((a - b).abs().max()) <= 1e-4 * float(a.abs().max()), name
    assert abs(r1["summary"]["final_accuracy"] - r2["summary"]["final_accuracy"]) <= 0.005


@pytest.mark.slow
def test_a_killed_rank_resumes_under_torchrun_to_the_same_file(runs):
    dead = runs["dead"]
    assert dead.returncode == 1
    line = [x for x in dead.stderr.splitlines() if x.startswith("netsqueeze compress: error:")]
    assert len(line) == 1 and "process 1 of 2 stopped" in line[0] and "--resume" in line[0]
    # killed inside retrain 2/2: the last committed stage and that stage's epoch checkpoint
    assert runs["state_after_kill"] == ["progress.json", "stage-1.pt", "train-2.pt"]
    assert "resuming after stage 2 of 5 (prune 1/2)" in runs["resumed"].stdout
    killed, two = runs["killed"], runs["two"]
    assert (killed / "model.nsq").read_bytes() == (two / "model.nsq").read_bytes()
    a, b = _results(killed), _results(two)
    for s1, s2 in zip(a["stages"], b["stages"]):
        assert s1["accuracy"] == s2["accuracy"] and s1["nonzero"] == s2["nonzero"]
    assert a["stages"][2]["train"]["resumed_from"] == 20


@pytest.mark.slow
def test_a_two_process_run_is_not_resumed_by_one_process(runs, capsys):
    _one_line_error(capsys, _args(runs["recipe"], runs["copy"], "--resume"),
                    "belongs to a run with other settings")
    assert (runs["copy"] / ".state" / "progress.json").exists()  # left as it was


# ------------------------------------------------------------------------------------------
# options that cannot go together: one line, exit 2, before any process starts
# ------------------------------------------------------------------------------------------


def _one_line_error(capsys, argv, text):
    code = main.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netsqueeze compress: error: "), err
    assert text in lines[0], err


def test_nproc_with_the_automatic_search_is_refused(capsys, tmp_path):
    _one_line_error(capsys, ["compress", "--max-drop", "1", "--nproc", "2", "-o",
                             str(tmp_path / "o")], "automatic search")


def test_nproc_with_one_named_gpu_is_refused(capsys, tmp_path):
    _one_line_error(capsys, ["compress", "--device", "cuda:1", "--nproc", "2", "-o",
                             str(tmp_path / "o")], "--device cuda:1")


def test_nproc_other_than_torchruns_world_size_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    _one_line_error(capsys, ["compress", "--nproc", "3", "-o", str(tmp_path / "o")],
                    "WORLD_SIZE=2")


def test_batches_smaller_than_the_processes_are_refused(capsys, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.replace("batch_size = 200\n[prune]", "batch_size = 2\n[prune]"))
    _one_line_error(capsys, ["compress", "--model", "lenet-300-100", "--recipe", str(recipe),
                             "--nproc", "3", "-o", str(tmp_path / "o")],
                    "train.batch_size 2 is smaller than the 3")
    assert not (tmp_path / "o").exists()


def test_nproc_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exc:
        main.main(["compress", "--nproc", "0"])
    assert exc.value.code == 2
    assert "--nproc" in capsys.readouterr().err
