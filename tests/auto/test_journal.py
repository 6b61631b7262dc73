"""netsqueeze.auto.Journal: a search stopped at any training call resumes to the same result."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from netsqueeze import FormatError
from netsqueeze.auto import Journal, compress, cost_model, sensitivity


class Killed(BaseException):
    """The process died here (no ``except Exception`` survives it)."""


KW = {"max_drop": 1.0, "retrain_iterations": 30, "finetune_iterations": 20, "max_rounds": 4,
      "bias_bits": (4, 3), "ecsq_deltas": (1.0,), "progress": False, "log": lambda s: None}


def _search(problem, tiny, sens, folder, entries, stored, kill_at=0):
    """One search with a journal in ``folder``; ``stored`` receives each commit (a copy of the
    entries: what a kill leaves on disk); the ``kill_at``-th training call never returns."""
    model, (x_tr, y_tr), (x_va, y_va) = problem
    x_cf, y_cf = tiny.make_blobs(400, 3)

    def commit(e):
        stored[:] = json.loads(json.dumps(e))

    journal = Journal(entries, folder, commit)

    def train_fn(m, n):
        if journal.train_calls == kill_at:
            raise Killed
        tiny.sgd_loop(m, x_tr, y_tr, n, lr=0.01, seed=journal.train_calls)

    return compress(model, train_fn, lambda m: tiny.accuracy(m, x_va, y_va),
                    confirm_fn=lambda m: tiny.accuracy(m, x_cf, y_cf),
                    sensitivity_result=sens, journal=journal, **KW)


def _path(report):
    return [(r.phase, r.sparsity, r.bits, r.accuracy, r.file_bytes, r.confirm_accuracy,
             r.bias_bits, r.ecsq_delta, r.note) for r in report.rounds]


@pytest.fixture(scope="module")
def sens(problem, tiny):
    model, _, (x_va, y_va) = problem
    s = sensitivity(model, eval_fn=lambda m: tiny.accuracy(m, x_va, y_va), progress=False)
    # the layers priced once for every search here (pricing is most of a tiny search's time)
    KW["cost"] = cost_model(model, s.layers[0].sparsities, s.layers[0].bits)
    return s


@pytest.fixture(scope="module")
def reference(problem, tiny, sens, tmp_path_factory):
    stored: list = []
    folder = tmp_path_factory.mktemp("ref")
    out, rep = _search(problem, tiny, sens, folder, [], stored)
    return out, rep, stored, folder


def test_killed_at_a_training_call_resumes_to_the_same_search(problem, tiny, sens,
                                                                reference, tmp_path):
    """Killed at the first, second, a middle and the last two training calls (every write of
    a whole run is a kill point in tests/experiments/test_resume_faults.py)."""
    ref_model, ref, ref_entries, _ = reference
    n_train = sum(e["kind"] == "train" for e in ref_entries)
    assert n_train >= 6  # pruning rounds, recoveries, sharing attempts
    assert any(r.phase == "share" for r in ref.rounds)
    for k in sorted({1, 2, n_train // 2, n_train - 1, n_train}):
        folder = tmp_path / f"k{k}"
        folder.mkdir()
        stored: list = []
        with pytest.raises(Killed):
            _search(problem, tiny, sens, folder, [], stored, kill_at=k)
        assert sum(e["kind"] == "train" for e in stored) == k - 1
        out, rep = _search(problem, tiny, sens, folder, copy.deepcopy(stored), [])
        assert _path(rep) == _path(ref), f"killed at training call {k}"
        assert rep.chosen == ref.chosen
        got, want = out.state_dict(), ref_model.state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[n], want[n]) for n in want), f"killed at call {k}"


def test_replay_trains_nothing_and_reads_the_clock_it_recorded(problem, tiny, sens, reference,
                                                              tmp_path):
    _, ref, _, _ = reference
    folder = tmp_path / "replay"
    folder.mkdir()
    stored: list = []
    _search(problem, tiny, sens, folder, [], stored)
    trained = []
    model, _, (x_va, y_va) = problem
    journal = Journal(copy.deepcopy(stored), folder, lambda e: None)
    _, rep = compress(model, lambda m, n: trained.append(n),
                      lambda m: tiny.accuracy(m, x_va, y_va),
                      confirm_fn=lambda m: 0.0,  # never asked: every answer is recorded
                      sensitivity_result=sens, journal=journal, **KW)
    assert trained == []
    assert _path(rep) == _path(ref)
    assert [r.seconds for r in rep.rounds] == [
        r.seconds for r in _search(problem, tiny, sens, folder, copy.deepcopy(stored), [])[1]
        .rounds]


def test_a_journal_of_another_search_is_refused_with_the_fix(problem, tiny, sens, reference,
                                                            tmp_path):
    _, _, entries, _ = reference
    model, _, (x_va, y_va) = problem
    bad = copy.deepcopy(entries)
    first_eval = next(i for i, e in enumerate(bad) if e["kind"] == "eval")
    bad[first_eval] = {"kind": "train", "file": "auto-00000.pt"}
    journal = Journal(bad, tmp_path, lambda e: None, fix="start over")
    with pytest.raises(FormatError, match="does not fit this search.*start over"):
        compress(model, lambda m, n: None, lambda m: tiny.accuracy(m, x_va, y_va),
                 confirm_fn=lambda m: 0.0, sensitivity_result=sens, journal=journal, **KW)
    for value in (float("nan"), "0.9", True, None):
        bad = copy.deepcopy(entries)
        bad[first_eval] = {"kind": "eval", "value": value}
        with pytest.raises(FormatError, match="no valid value"):
            compress(model, lambda m, n: None, lambda m: 1.0, confirm_fn=lambda m: 0.0,
                     sensitivity_result=sens, journal=Journal(bad, tmp_path, lambda e: None),
                     **KW)


def test_weights_files_are_checked(problem, tiny, sens, tmp_path):
    model, _, (x_va, y_va) = problem
    stored: list = []
    _search(problem, tiny, sens, tmp_path, [], stored)
    first = next(e for e in reversed(stored) if e["kind"] == "train" and e["file"])

    def replay(entries):
        return compress(model, lambda m, n: None, lambda m: tiny.accuracy(m, x_va, y_va),
                        confirm_fn=lambda m: 0.0, sensitivity_result=sens,
                        journal=Journal(entries, tmp_path, lambda e: None), **KW)

    for name in ("../outside.pt", "/etc/passwd", 3):
        bad = copy.deepcopy(stored)
        bad[stored.index(first)] = {"kind": "train", "file": name}
        with pytest.raises(FormatError, match="names no weights file"):
            replay(bad)
    (tmp_path / first["file"]).write_bytes(b"not a torch file")
    with pytest.raises(FormatError, match=first["file"]):
        replay(copy.deepcopy(stored))
    torch.save({"fc1.weight": torch.zeros(3)}, tmp_path / first["file"])
    with pytest.raises(FormatError, match="does not fit the model"):
        replay(copy.deepcopy(stored))
    (tmp_path / first["file"]).unlink()
    with pytest.raises(FormatError, match="missing"):
        replay(copy.deepcopy(stored))


def test_weights_no_model_needs_are_deleted(reference):
    """Disk stays bounded: the journal keeps the weights of the models the search still holds
    (the accepted pruned model, sharing's start, the best so far) and the last training's."""
    _, _, entries, folder = reference
    trains = [e for e in entries if e["kind"] == "train"]
    kept = [e["file"] for e in trains if e["file"]]
    assert len(trains) >= 6 and 1 <= len(kept) <= 4
    assert {p.name for p in folder.glob("*.pt")} == set(kept)
