"""Resume after a kill at any point: fault injection over every file operation of a run.

A run is "killed" at the N-th operation that changes its folder (``os.replace`` — every atomic
write ends with one —, ``os.unlink``, ``os.rmdir``): that operation does not happen (a rename
killed part-way leaves a half-written temporary file behind), and from then on no operation of
the dead run touches the disk. The run is then resumed, and its outputs must equal, byte for
byte, those of a run never interrupted. N goes from 1 until a run completes.

A tiny network and a tiny IDX dataset keep each run well under a second.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from netsqueeze import FormatError
from netsqueeze.core.fileio import TEMP_PATTERN
from netsqueeze.data import load, write_idx
from netsqueeze.experiments import zero_weights as zw
from netsqueeze.experiments.pipeline import CompressSpec, run_compress
from netsqueeze.experiments.recipe import parse_recipe
from netsqueeze.models import MODELS
from netsqueeze.nn.train import TrainConfig

RECIPE = {
    "train": {"iterations": 6, "batch_size": 100, "seed": 0},  # 2 epochs of 300 images
    "prune": {"sparsity": {"fc1": 0.8, "fc2": 0.5}, "steps": 2, "retrain": {"iterations": 3}},
    "share": {"bits": 2},
    "finetune": {"iterations": 3},
}


class Tiny(nn.Module):
    input_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 12)
        self.fc2 = nn.Linear(12, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class Killed(BaseException):
    """The process died (a BaseException: no ``except Exception`` handler survives it)."""


class Faults:
    """Kill the run at the ``at``-th operation that changes the disk (0: never)."""

    def __init__(self, monkeypatch, at: int = 0):
        self.at, self.count, self.dead = at, 0, False
        real = {name: getattr(os, name) for name in ("replace", "unlink", "rmdir")}

        def wrap(name):
            def op(*args, **kw):
                self._step(name, args)
                return real[name](*args, **kw)
            return op

        for name in real:
            monkeypatch.setattr(os, name, wrap(name))

    def _step(self, name, args):
        if self.dead:
            raise Killed
        self.count += 1
        if self.count == self.at:
            self.dead = True
            if name == "replace":  # killed while writing: the temporary file is half there
                src = Path(args[0])
                src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
            raise Killed


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """300 training and 200 test images of the bundled MNIST sample, as IDX files."""
    ds = load("mnist-sample")
    folder = tmp_path_factory.mktemp("tiny-idx")
    write_idx(folder / "train-images-idx3-ubyte", ds.x_train[:300])
    write_idx(folder / "train-labels-idx1-ubyte", ds.y_train[:300].astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", ds.x_test[:200])
    write_idx(folder / "t10k-labels-idx1-ubyte", ds.y_test[:200].astype(np.uint8))
    return f"idx:{folder}"


def _setup(monkeypatch):
    """Register the tiny network and stop the clock, so that wall times are equal (0) too; skip
    fsync (durability against power loss is not what these tests check, and it is slow)."""
    monkeypatch.setitem(MODELS, "tiny", Tiny)
    monkeypatch.setattr(time, "perf_counter", lambda: 0.0)
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.fixture
def frozen(monkeypatch):
    """:func:`_setup`, on one thread (tiny matrices: threads only cost time)."""
    _setup(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _compress(data, out, **kw):
    spec = CompressSpec(model="tiny", dataset=data, device="cpu")
    return run_compress(spec, parse_recipe(RECIPE), out, progress=False, plots=False,
                        log=kw.pop("log", lambda s: None), **kw)


def _zero_weights(data, out, **kw):
    spec = zw.ZeroWeightsSpec(dataset=data, model="tiny", device="cpu",
                              train=TrainConfig(iterations=6, batch_size=100, seed=0),
                              threshold_num=3, cluster_starts=(6, 6), cluster_end=2,
                              cluster_steps=2)
    return zw.run_zero_weights(spec, out, progress=False, plots=False,
                               log=kw.pop("log", lambda s: None), **kw)


def _strip_volatile(obj):
    """results.json without what differs between runs by nature: peak memory, and where a
    training resumed from (or whether the run was resumed)."""
    if isinstance(obj, dict):
        return {k: _strip_volatile(v) for k, v in obj.items()
                if k not in ("peak_rss_mb", "resumed_from", "resumed")}
    if isinstance(obj, list):
        return [_strip_volatile(v) for v in obj]
    return obj


def _outputs(out: Path, names) -> dict:
    got = {}
    for name in names:
        data = (out / name).read_bytes()
        got[name] = _strip_volatile(json.loads(data)) if name == "results.json" else data
    return got


def _kill_at_every_step(monkeypatch, run, tmp_path, names):
    reference = tmp_path / "reference"
    run(reference)
    expected = _outputs(reference, names)
    n = 0
    while True:
        n += 1
        out = tmp_path / f"killed-{n}"
        faults = Faults(monkeypatch, at=n)
        try:
            run(out)
        except Killed:
            pass
        else:
            assert faults.count == n - 1  # every operation was a kill point once
            break
        finally:
            monkeypatch.undo()
        run(out, resume=True)
        assert _outputs(out, names) == expected, f"killed at operation {n}"
        left = sorted(p.name for p in out.iterdir())
        assert left == sorted(names), f"killed at operation {n}: {left}"
    return n


def test_compress_killed_at_any_write_resumes_to_identical_outputs(
        tmp_path, monkeypatch, tiny_data, frozen):
    names = ("results.json", "table.md", "model.nsq", "compressed.pt", "trained.pt")

    def run(out, **kw):
        _setup(monkeypatch)
        return _compress(tiny_data, out, **kw)

    n = _kill_at_every_step(monkeypatch, run, tmp_path, names)
    # progress at the start, per stage: training checkpoints, snapshot, record, removals; outputs
    assert n > 30


def test_zero_weights_killed_at_any_write_resumes_to_identical_outputs(
        tmp_path, monkeypatch, tiny_data, frozen):
    names = ("results.json", "summary.md", "model.pt")

    def run(out, **kw):
        _setup(monkeypatch)
        return _zero_weights(tiny_data, out, **kw)

    n = _kill_at_every_step(monkeypatch, run, tmp_path, names)
    assert n > 10


def test_interrupted_first_training_resumes_where_it_stopped(tmp_path, tiny_data, frozen):
    from netsqueeze.experiments import pipeline

    reference = _compress(tiny_data, tmp_path / "ref")
    real = pipeline.train
    out = tmp_path / "run"

    def first_epoch_only(*args, **kw):
        def stop(log):
            raise KeyboardInterrupt
        return real(*args, **{**kw, "on_epoch": stop})

    pipeline.train = first_epoch_only
    try:
        with pytest.raises(KeyboardInterrupt):
            _compress(tiny_data, out)
    finally:
        pipeline.train = real
    progress = json.loads((out / ".state" / "progress.json").read_text())
    assert progress["stages"] == []
    assert (out / ".state" / "train-0.pt").is_file()  # the checkpoint survives the interruption

    lines = []
    resumed = _compress(tiny_data, out, resume=True, log=lines.append)
    assert any("resuming the first stage" in line for line in lines)
    assert resumed["stages"][0]["train"]["resumed_from"] == 3  # after 1 of 2 epochs, not from 0
    assert _strip_volatile(resumed) == _strip_volatile(reference)
    assert (out / "model.nsq").read_bytes() == (tmp_path / "ref" / "model.nsq").read_bytes()


def test_zero_weights_interrupted_first_training_resumes(tmp_path, tiny_data, frozen):
    reference = _zero_weights(tiny_data, tmp_path / "ref")
    real = zw.train
    out = tmp_path / "run"

    def first_epoch_only(*args, **kw):
        def stop(log):
            raise KeyboardInterrupt
        return real(*args, **{**kw, "on_epoch": stop})

    zw.train = first_epoch_only
    try:
        with pytest.raises(KeyboardInterrupt):
            _zero_weights(tiny_data, out)
    finally:
        zw.train = real
    lines = []
    resumed = _zero_weights(tiny_data, out, resume=True, log=lines.append)
    assert any("resuming from the last epoch" in line for line in lines)
    assert resumed["train"]["log"]["resumed_from"] == 3
    assert _strip_volatile(resumed) == _strip_volatile(reference)


def _interrupted(tiny_data, out, monkeypatch):
    from netsqueeze.experiments import pipeline

    monkeypatch.setattr(pipeline, "share_weights_",
                        lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        _compress(tiny_data, out)
    monkeypatch.undo()
    _setup(monkeypatch)


class _Payload:
    """Unpickling this runs code: it creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_planted_pickle_is_refused_and_never_run(tmp_path, monkeypatch, tiny_data, frozen):
    out = tmp_path / "run"
    _interrupted(tiny_data, out, monkeypatch)
    state = out / ".state"
    progress = json.loads((state / "progress.json").read_text())
    snapshot = state / progress["snapshot"]
    marker = tmp_path / "payload-ran"
    good = snapshot.read_bytes()
    for target in (snapshot, state / "train-3.pt"):  # the snapshot, a training checkpoint
        torch.save({"model": _Payload(marker)}, target)
        with pytest.raises(FormatError) as info:
            _compress(tiny_data, out, resume=True)
        msg = str(info.value)
        assert str(target) in msg and "rerun without --resume" in msg and "\n" not in msg
        assert not marker.exists()
        snapshot.write_bytes(good)
    # the same for a plain pickle
    snapshot.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(FormatError, match="rerun without --resume"):
        _compress(tiny_data, out, resume=True)
    assert not marker.exists()


def test_truncated_or_corrupt_state_gives_a_clear_error(tmp_path, monkeypatch, tiny_data, frozen):
    out = tmp_path / "run"
    _interrupted(tiny_data, out, monkeypatch)
    state = out / ".state"
    progress_text = (state / "progress.json").read_text()
    snapshot = state / json.loads(progress_text)["snapshot"]
    good = snapshot.read_bytes()
    snapshot.write_bytes(good[: len(good) // 2])
    with pytest.raises(FormatError) as info:
        _compress(tiny_data, out, resume=True)
    msg = str(info.value)
    assert msg.startswith(str(snapshot)) and "rerun without --resume" in msg and "\n" not in msg
    snapshot.write_bytes(good)

    (state / "progress.json").write_text(progress_text[:1] + "\n")
    with pytest.raises(FormatError) as info:
        _compress(tiny_data, out, resume=True)
    msg = str(info.value)
    assert msg.startswith(str(state / "progress.json")) and "Expecting" in msg
    assert "rerun without --resume" in msg

    (state / "progress.json").write_text(progress_text.replace(snapshot.name, "../../x.pt"))
    with pytest.raises(FormatError, match="not a state file name"):
        _compress(tiny_data, out, resume=True)

    (state / "progress.json").write_text(progress_text)  # intact again: resumes
    res = _compress(tiny_data, out, resume=True)
    assert [s["stage"] for s in res["stages"]][-1] == "finetune"


def test_rerun_and_resume_say_what_they_do_with_saved_state(
        tmp_path, monkeypatch, tiny_data, frozen):
    out = tmp_path / "run"
    lines = []
    _compress(tiny_data, out, resume=True, log=lines.append)  # nothing to resume
    assert sum("no saved progress" in line and "fresh" in line for line in lines) == 1

    # a stray temporary file of a killed write, and a file of the user's: only ours goes
    stray = out / ".model.nsq.abc123_x.tmp"
    stray.write_bytes(b"half")
    mine = out / "notes.tmp"
    mine.write_text("keep")
    assert TEMP_PATTERN.match(stray.name) and not TEMP_PATTERN.match(mine.name)
    _interrupted(tiny_data, out, monkeypatch)
    assert not stray.exists() and mine.exists()
    # the interrupted run in the reused folder left no output of the finished run beside its own
    assert not (out / "results.json").exists() and not (out / "model.nsq").exists()
    assert (out / "trained.pt").exists()

    lines.clear()
    _compress(tiny_data, out, log=lines.append)  # without --resume: progress is discarded
    notes = [line for line in lines if line.startswith("note:")]
    assert len(notes) == 2
    assert "discarding the saved progress" in notes[0] and "--resume" in notes[0]
    assert "removed a previous run's outputs" in notes[1] and "trained.pt" in notes[1]


def _tiny_auto(monkeypatch, sparsities, bits):
    """The automatic runs' module, with a coarse sensitivity grid (pricing every layer at each
    point is most of a tiny run's time) and a few iterations of (re)training."""
    import netsqueeze.auto
    from netsqueeze.experiments import auto_compress as ac
    from netsqueeze.experiments.recipe import StorageConfig

    monkeypatch.setattr(netsqueeze.auto, "sensitivity", functools.partial(
        netsqueeze.auto.search.sensitivity, sparsities=sparsities, bits=bits))
    small = TrainConfig(iterations=6, batch_size=100, seed=0)
    monkeypatch.setattr(ac, "_configs", lambda name: (
        small, TrainConfig(iterations=3, batch_size=100, seed=1, lr=2e-4),
        TrainConfig(iterations=3, batch_size=100, seed=2, lr=2e-4), StorageConfig()))
    return ac


def _auto(data, out, monkeypatch, **kw):
    """``compress --max-drop`` on the tiny network: a few short rounds, sharing, biases."""
    ac = _tiny_auto(monkeypatch, (0.0, 0.5, 0.8, 0.95), (2, 3, 5))
    spec = ac.AutoSpec(model="tiny", dataset=data, device="cpu", max_drop=30.0, max_rounds=2,
                       retrain_iterations=2, finetune_iterations=2, val_fraction=0.2,
                       confirm_fraction=0.1)
    return ac.run_auto_compress(spec, out, progress=False, plots=False,
                                log=kw.pop("log", lambda s: None), **kw)


@pytest.mark.slow
def test_auto_compress_killed_at_any_write_resumes_to_identical_outputs(
        tmp_path, monkeypatch, tiny_data, frozen):
    names = ("results.json", "recipe.toml", "table.md", "sensitivity.json", "sensitivity.md",
             "model.nsq", "compressed.pt")

    def run(out, **kw):
        _setup(monkeypatch)
        return _auto(tiny_data, out, monkeypatch, **kw)

    n = _kill_at_every_step(monkeypatch, run, tmp_path, names)
    # training checkpoints, the trained snapshot, sensitivity, every retraining's weights and
    # record, the files priced, the outputs
    assert n > 20


def test_sensitivity_killed_at_any_write_resumes_to_identical_outputs(
        tmp_path, monkeypatch, tiny_data, frozen):
    """``netsqueeze sensitivity``: its training resumes from its checkpoint, a kill while
    measuring measures again from the trained model, and the outputs are the same."""
    names = ("sensitivity.json", "sensitivity.md")

    def run(out, **kw):
        _setup(monkeypatch)
        ac = _tiny_auto(monkeypatch, (0.0, 0.5, 0.9), (2, 4))
        spec = ac.AutoSpec(model="tiny", dataset=tiny_data, device="cpu", val_fraction=0.2)
        return ac.run_sensitivity(spec, out, retrain_iterations=1, progress=False, plots=False,
                                  log=lambda s: None, **kw)

    n = _kill_at_every_step(monkeypatch, run, tmp_path, names)
    assert n > 5  # progress, training checkpoints, the trained snapshot, the curves, outputs
