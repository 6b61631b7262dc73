"""Compressing under an accuracy budget with the user's own training loop and metric.

:func:`compress` measures the trained model's per-layer sensitivity, prices every layer with the
real coder, allocates per-layer sparsity (and bits) for the smallest predicted file within a
growing share of the budget, and moves towards it round by round: prune, retrain, evaluate.
A round that breaks the budget is undone and retried with the kept fraction of the layers that
hurt most raised (a back-off). Then weights are shared at per-layer bit widths chosen the same
way, the centroids fine-tuned, and evaluated. Every decision uses ``eval_fn`` -- the validation
metric -- only; the model returned is the smallest one (real file bytes) that met the budget.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from netsqueeze.auto.allocate import allocate
from netsqueeze.auto.cost import CostModel, cost_model, layer_bytes
from netsqueeze.auto.journal import Journal
from netsqueeze.auto.sensitivity import (
    DEFAULT_BITS,
    DEFAULT_SPARSITIES,
    SensitivityResult,
    sensitivity,
)
from netsqueeze.nn.export import DEFAULT_GAP_BITS, save_compressed
from netsqueeze.nn.modules import compressible_layers
from netsqueeze.nn.prune import PruneConfig, prune_
from netsqueeze.nn.share import ShareConfig, share_biases_, share_weights_

__all__ = ["AutoReport", "Round", "compress", "file_bytes"]

TrainFn = Callable[[nn.Module, int], object]
EvalFn = Callable[[nn.Module], float]


@dataclass
class Round:
    """One model the search finished: what it tried and what validation said."""

    index: int
    phase: str  # "trained", "prune", "share" or "bias"
    sparsity: dict[str, float]
    bits: dict[str, int] | None
    accuracy: float
    file_bytes: int
    predicted_bytes: int | None
    meets_budget: bool
    accepted: bool
    note: str = ""
    seconds: float = 0.0
    bias_bits: int | None = None
    ecsq_delta: float | None = None  # entropy-constrained sharing: bits below k-means's rate
    confirm_accuracy: float | None = None  # confirm_fn of a model that met the budget
    confirmed: bool | None = None  # whether it met the budget on the confirmation data too


@dataclass
class AutoReport:
    """What :func:`compress` did; ``to_dict()`` is JSON."""

    baseline_accuracy: float
    floor_accuracy: float
    budget_pp: float
    margin: float
    rounds: list[Round] = field(default_factory=list)
    chosen: int | None = None
    sparsity: dict[str, float] = field(default_factory=dict)
    bits: dict[str, int] | None = None
    bias_bits: int | None = None
    ecsq_delta: float | None = None
    importance: str | None = None  # "importance_fn" when it weighted the chosen sharing
    accuracy: float = 0.0
    file_bytes: int = 0
    dense_bytes: int = 0
    backoffs: int = 0
    prune_rounds: int = 0
    stopped_by: str = ""
    seconds: float = 0.0
    retrain_iterations: int = 0
    finetune_iterations: int = 0
    decided_on: dict[str, str] = field(default_factory=dict)
    confirm_baseline: float | None = None
    confirm_floor: float | None = None
    allocations: list[dict] = field(default_factory=list)
    sensitivity: dict | None = None
    share_sensitivity: dict | None = None
    cost: dict | None = None

    @property
    def ratio(self) -> float:
        return self.dense_bytes / self.file_bytes if self.file_bytes else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


def file_bytes(model: nn.Module, gap_bits: Mapping[str, int] | None = None) -> int:
    """Bytes of the ``.nsq`` file of ``model`` as it stands (written to a temporary file)."""
    with tempfile.TemporaryDirectory() as tmp:
        return int(save_compressed(model, Path(tmp) / "m.nsq",
                                   gap_bits=dict(gap_bits or DEFAULT_GAP_BITS))["bytes"])


def _interp(grid: Sequence[float], values: np.ndarray, x: float) -> float:
    return float(np.interp(x, np.asarray(grid, float), values))


class _Clock:
    def __init__(self, budget: float | None, now: Callable[[], float] = time.perf_counter):
        self.now = now
        self.t0 = now()
        self.budget = budget
        self.last = 0.0

    def elapsed(self) -> float:
        return self.now() - self.t0

    def allows(self, estimate: float | None = None, reserve: float = 0.0) -> bool:
        """Whether a round of ``estimate`` seconds (default: the longest round's) still fits,
        with ``reserve`` seconds left over for what must follow it."""
        if self.budget is None:
            return True
        est = self.last if estimate is None else estimate
        return self.elapsed() + est + reserve <= self.budget


def _worth_a_round(target: dict[str, float], goal: Mapping[str, float],
                   current: Mapping[str, float], bits: Mapping[str, int], costs: CostModel,
                   min_gain: float) -> dict[str, float]:
    """``target`` without the layers whose pruning, all the way to the allocation's ``goal``,
    saves less than ``min_gain`` of the predicted file: each layer's record and the file are
    priced at ``bits`` (the allocation's), the file with its layers at their ``current``
    sparsity. The goal, not the round's step, is what the round works towards (at few bits
    the first halving of a dense layer saves little: its positions cost about what its zeros
    did). The layers left out stay where they are."""
    grid = list(costs.sparsities)

    def at(name, s):
        return _interp(grid, costs.layers[name][:, costs.bits.index(int(bits[name]))], s)

    total = costs.fixed_bytes + sum(at(n, current[n]) for n in target)
    return {n: s if at(n, current[n]) - at(n, max(s, goal[n])) >= min_gain * total
            else current[n] for n, s in target.items()}


def compress(
    model: nn.Module,
    train_fn: TrainFn,
    eval_fn: EvalFn,
    *,
    max_drop: float | None = None,
    min_accuracy: float | None = None,
    sensitivity_result: SensitivityResult | None = None,
    cost: CostModel | None = None,
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    bits: Sequence[int] = DEFAULT_BITS,
    gap_bits: Mapping[str, int] | None = None,
    retrain_iterations: int = 500,
    finetune_iterations: int = 500,
    final_retrain_iterations: int = 0,
    recover_iterations: int | None = None,
    cycles: int = 3,
    max_step: float = 0.5,
    min_gain: float = 0.01,
    bias_bits: Sequence[int] = (6, 5, 4, 3, 2),
    share_reserve: float = 0.25,
    margin: float = 0.2,
    max_backoffs: int = 8,
    max_rounds: int = 12,
    share_attempts: int = 3,
    ecsq_deltas: Sequence[float] = (1.0, 0.5),
    importance_fn: Callable[[nn.Module], Mapping[str, object]] | None = None,
    confirm_fn: EvalFn | None = None,
    confirm_max_drop: float | None = None,
    confirm_min_accuracy: float | None = None,
    confirm_tolerance: float = 0.0,
    time_budget: float | None = None,
    journal: Journal | None = None,
    filter_fn=None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, AutoReport]:
    """Prune and share ``model`` as far as a validation-accuracy budget allows.

    Parameters
    ----------
    model : nn.Module
        Trained; not changed (a copy is compressed).
    train_fn : callable ``(model, iterations) -> any``
        The user's training loop: trains ``model`` in place for ``iterations`` steps. Pruned
        weights stay zero and shared weights stay shared through any optimizer (netsqueeze's
        masks and codebooks are attached to the model).
    eval_fn : callable ``(model) -> float``
        The user's metric on *validation* data (higher is better, e.g. accuracy in [0, 1]).
    max_drop : float, optional
        Largest allowed drop from the trained model's ``eval_fn``, in percentage points.
    min_accuracy : float, optional
        Smallest allowed ``eval_fn`` (e.g. ``1 - max_error / 100``). With both, both hold.
    sensitivity_result : SensitivityResult, optional
        Measured before (``sensitivity(model, eval_fn=...)``); measured here otherwise.
    cost : CostModel, optional
        Priced before (``cost_model(model, ...)`` on the sensitivity grid); priced here otherwise.
    sparsities, bits : sequences
        The grid of the sensitivity curves and of the allocation.
    gap_bits : {"conv": int, "fc": int}, optional
        Relative-index widths of the file (default 8 and 5).
    retrain_iterations : int
        ``train_fn`` iterations after each pruning round.
    finetune_iterations : int
        ``train_fn`` iterations after weight sharing (the centroids and other parameters).
    final_retrain_iterations : int
        Longer retraining of the last accepted pruned model at the end of each pruning cycle
        (kept only when it still meets the budget).
    recover_iterations : int, optional
        A round that breaks the budget by at most the budget again (its drop is under twice
        the allowed one) is first retrained this many more iterations and measured again; only
        if it still breaks the budget is it undone and backed off. A weight-sharing attempt
        that misses as closely is fine-tuned this many more iterations the same way. Default
        ``2 * retrain_iterations``; 0 turns recovery off.
    cycles : int
        Pruning cycles. A cycle ends when the allocation saturates (every layer capped by a
        back-off) or ``max_backoffs`` rounds broke the budget; its final retraining usually
        recovers accuracy that the short rounds could not, so the next cycle lifts the caps and
        tries again from there (with a fresh back-off allowance). ``max_rounds`` and the time
        budget bound all cycles together.
    max_step : float in (0, 1]
        The largest share of a layer's remaining weights one round may remove (0.5: at most
        halve its non-zeros per round, so that short retraining can follow; 1: no limit).
        Halved in each later cycle (0.25, ...), which starts where the previous one saturated.
    min_gain : float in [0, 1)
        A round prunes a layer only when pruning it to the allocation's sparsity saves at least
        this share of the predicted file (priced at the allocation's bits, the other layers as
        they are): a round's retraining costs as much for a few bytes of a small layer as for
        a large layer's kilobytes, and time a search spends there is time weight sharing does
        not get. 0: no such limit.
    share_reserve : float in [0, 1)
        Share of the budget the pruning rounds leave to weight sharing: a pruned model is
        accepted only with ``share_reserve x budget`` of validation accuracy to spare (a model
        pruned to the very floor leaves sharing nothing to lose). The final choice still
        accepts any model that meets the budget itself.
    bias_bits : sequence of int
        Last, the biases of the compressible layers of the smallest accepted model are
        replaced by 1-D k-means centres (``2**b`` per layer, no retraining) at each of these
        bit widths in turn; each result is evaluated and kept only if it meets the budget
        (the file stores them with a codebook). Empty: biases stay as trained.
    margin : float in [0, 1)
        Safety margin of the predictions: pruning allocations aim at ``(1 - margin)`` of the
        budget (times a growing scale), sharing allocations at ``(1 - margin)`` of what the
        pruned model left. Every model is accepted on its measured ``eval_fn`` alone.
    max_backoffs : int
        Broken rounds tolerated before the pruning phase stops.
    max_rounds : int
        Most pruning rounds.
    share_attempts : int
        Most weight-sharing attempts (each fine-tuned and evaluated): the first allocated for
        what pruning left of the budget, each next one for three times that after a success,
        a third after a miss, and halfway between (in log scale) once there was both.
    ecsq_deltas : sequence of float
        After k-means sharing met the budget: entropy-constrained sharing
        (``ShareConfig(method="ecsq", rate_delta=d)``) at the same bits per layer, each layer's
        index rate ``d`` bits below k-means's, tried for each ``d`` in turn (boldest first)
        until one meets the budget; it is kept when its file is smaller. Empty: k-means only.
    importance_fn : callable ``(model) -> {layer name: tensor}``, optional
        Per-weight importance for that sharing (e.g.
        :func:`netsqueeze.nn.share.fisher_importance` on the training data), so that sensitive
        weights move less; without it every weight counts the same.
    confirm_fn : callable ``(model) -> float``, optional
        The same metric on *other* held-out data, which only vetoes: a model that met the
        budget on ``eval_fn`` is also measured here, and the final choice is the smallest model
        that meets the budget on both. Every accept / back-off decision of a long search is
        taken on ``eval_fn``'s data, so the models it ends with fit that data a little by
        chance; the confirmation data proposes nothing, so it tells whether the drop is real.
        Two decisions read its veto: weight sharing starts from the last accepted pruned model
        it did not refuse, and a sharing attempt it refuses is followed by one with more bits,
        not fewer. Its budget: ``confirm_max_drop`` (from ``confirm_fn`` of the
        trained model) and / or ``confirm_min_accuracy``; by default the drop the search may
        spend on validation, counted from the trained model's ``confirm_fn`` (an absolute
        floor would also judge how hard the confirmation data happen to be), lowered by
        ``confirm_tolerance`` (accuracy units, e.g. half the standard error of the
        confirmation data, as the command line uses: a model is refused on evidence that it
        breaks the budget rather than on a few images of noise). The
        trained model is always a valid (last) choice.
    time_budget : float, optional
        Seconds for the whole call: no round starts when the longest round so far says it would
        end past the budget. Pruning rounds also leave the time that weight sharing and the
        biases are estimated to need (one sharing attempt at least), so that a tight budget
        ends pruning early rather than skipping sharing. Measuring sensitivity and pricing the
        layers come first and are not cut short (pass ``sensitivity_result`` / ``cost`` to
        reuse them).
    journal : Journal, optional
        Records every training call's weights, every evaluation and every clock reading
        (:mod:`netsqueeze.auto.journal`); given the journal of a search that was stopped, this
        search replays it and goes on where that one stopped, to the same result. ``train_fn``
        must then leave the same weights for the same model and call number
        (``journal.train_calls``).

    Returns
    -------
    model : nn.Module
        The smallest model (bytes of its ``.nsq`` file) whose ``eval_fn`` met the budget; at worst
        the trained model itself. Its masks / codebooks are attached (save it with
        :func:`netsqueeze.nn.export.save_compressed`).
    report : AutoReport
    """
    if max_drop is None and min_accuracy is None:
        raise ValueError("give a budget: max_drop (percentage points) or min_accuracy")
    if max_drop is not None and not (math.isfinite(max_drop) and max_drop >= 0):
        raise ValueError(f"max_drop must be a number of percentage points >= 0, got {max_drop!r}")
    if not 0.0 <= share_reserve < 1.0:
        raise ValueError(f"share_reserve must be in [0, 1), got {share_reserve!r}")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin!r}")
    if time_budget is not None and not time_budget > 0:
        raise ValueError(f"time_budget must be a positive number of seconds, got {time_budget!r}")
    for name, v in (("retrain_iterations", retrain_iterations),
                    ("finetune_iterations", finetune_iterations), ("max_backoffs", max_backoffs),
                    ("final_retrain_iterations", final_retrain_iterations),
                    ("max_rounds", max_rounds), ("share_attempts", share_attempts),
                    ("cycles", cycles)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    if not (isinstance(max_step, int | float) and 0 < max_step <= 1):
        raise ValueError(f"max_step must be in (0, 1], got {max_step!r}")
    if not (isinstance(min_gain, int | float) and 0 <= min_gain < 1):
        raise ValueError(f"min_gain must be in [0, 1), got {min_gain!r}")
    bias_bits = [int(b) for b in bias_bits]
    if any(not 1 <= b <= 16 for b in bias_bits):
        raise ValueError(f"bias_bits must be integers in 1..16, got {bias_bits!r}")
    if recover_iterations is None:
        recover_iterations = 2 * retrain_iterations
    if isinstance(recover_iterations, bool) or not isinstance(recover_iterations, int) or (
            recover_iterations < 0):
        raise ValueError(f"recover_iterations must be an integer >= 0, got "
                         f"{recover_iterations!r}")
    raw_eval = eval_fn
    if journal is not None:
        # every answer the search gets is recorded; a resumed search replays them in order
        raw_train, raw_confirm = train_fn, confirm_fn

        def train_fn(m, n):
            # first the weights no model the search holds came from are dropped
            journal.keep([good, base_pick[1], None if best is None else best[1]])
            journal.train(raw_train, m, n)

        def eval_fn(m):
            return journal.value("eval", lambda: raw_eval(m))

        if raw_confirm is not None:
            def confirm_fn(m):
                return journal.value("confirm", lambda: raw_confirm(m))

    def price(m) -> int:
        if journal is None:
            return file_bytes(m, gap)
        return int(journal.value("bytes", lambda: file_bytes(m, gap)))

    clock = _Clock(time_budget, time.perf_counter if journal is None else journal.now)
    gap = dict(DEFAULT_GAP_BITS)
    gap.update(gap_bits or {})
    cur = copy.deepcopy(model)
    cur.eval()
    t_eval = clock.now()
    base = float(eval_fn(cur))
    eval_secs = clock.now() - t_eval
    floor = -math.inf
    if max_drop is not None:
        floor = base - max_drop / 100
    if min_accuracy is not None:
        floor = max(floor, float(min_accuracy))
    budget = 100 * (base - floor)
    if budget < 0:
        raise ValueError(
            f"the trained model already misses the budget on validation ({100 * base:.2f} % < "
            f"{100 * floor:.2f} %); train it better or loosen the budget")
    names = [ref.name for ref in compressible_layers(cur, filter_fn)]
    if not names:
        raise ValueError("no compressible layer (Conv / Linear weight) in this model")
    confirm_floor = -math.inf
    confirm_base = None
    if confirm_fn is not None:
        confirm_base = float(confirm_fn(cur))
        if confirm_max_drop is None and confirm_min_accuracy is None:
            # the drop the search may spend on validation, from the trained model's level on
            # the confirmation data: two held-out sets differ in difficulty, drops much less
            confirm_floor = confirm_base - (base - floor)
        if confirm_max_drop is not None:
            confirm_floor = confirm_base - float(confirm_max_drop) / 100
        if confirm_min_accuracy is not None:
            confirm_floor = max(confirm_floor, float(confirm_min_accuracy))
        confirm_floor -= float(confirm_tolerance)
    report = AutoReport(baseline_accuracy=base, floor_accuracy=floor, budget_pp=budget,
                        margin=margin, retrain_iterations=retrain_iterations,
                        finetune_iterations=finetune_iterations,
                        decided_on={"sensitivity": "validation", "allocation": "validation",
                                    "acceptance and back-off": "validation",
                                    "choice of the final model": "validation" + (
                                        " and confirmation" if confirm_fn else "")}
                        | ({"sharing's start and direction": "validation, confirmation's veto"}
                           if confirm_fn else {}),
                        confirm_baseline=confirm_base,
                        confirm_floor=None if confirm_fn is None else confirm_floor)
    log(f"auto: trained model {100 * base:.2f} % on validation; budget {budget:.3f} pp "
        f"(floor {100 * floor:.2f} %)")

    sens = sensitivity_result
    if sens is None:
        sens = sensitivity(cur, eval_fn=eval_fn, sparsities=sparsities, bits=bits,
                           filter_fn=filter_fn, progress=progress)
    sp_grid = list(sens.layers[0].sparsities)
    bit_grid = list(sens.layers[0].bits)
    report.sensitivity = sens.to_dict()
    # one point of a sensitivity curve: an evaluation, plus the pruning or k-means before it
    per_eval = max(eval_secs, sens.seconds / max(1, sens.evaluations))
    costs = cost
    if costs is None:
        costs = cost_model(cur, sp_grid, bit_grid, gap_bits=gap, filter_fn=filter_fn)
    elif costs.sparsities != sp_grid or costs.bits != bit_grid or set(costs.layers) != set(names):
        raise ValueError("cost was priced on another grid or other layers than the sensitivity "
                         "curves; price it with cost_model(model, sparsities, bits)")
    report.cost = costs.to_dict()
    report.dense_bytes = costs.dense_bytes
    dp = {n: sens.prune_drop(n) for n in names}
    ds = {n: sens.share_drop(n) for n in names}

    rounds = report.rounds
    best: tuple[int, nn.Module] | None = None

    def reserve() -> float:
        """Seconds the pruning rounds leave to the phases after them, so that a time budget
        cuts pruning short rather than skipping weight sharing: the sharing curves (one
        evaluation per layer and bit width, the layers priced at each bit width), one sharing
        attempt (as long as the longest round, scaled by the fine-tuning's share of its
        iterations) and the bias evaluations, each model priced."""
        evals = len(bias_bits) + 1
        attempt = 0.0
        if share_attempts:
            evals += len(names) * len(bit_grid)
            attempt = clock.last * max(1.0, finetune_iterations / max(1, retrain_iterations))
            attempt += price_secs * len(bit_grid)
        return per_eval * evals + price_secs * (len(bias_bits) + 1) + attempt

    def record(phase, sp, bt, acc, m, predicted, accepted, note, secs, bias_bits=None,
               ecsq_delta=None):
        nonlocal best
        fb = price(m)
        meets = acc >= floor
        c_acc = confirmed = None
        if meets and confirm_fn is not None:
            # a veto only: the final choice, sharing's start and its direction read it
            c_acc = confirm_base if phase == "trained" else float(confirm_fn(m))
            confirmed = phase == "trained" or c_acc >= confirm_floor
        r = Round(index=len(rounds), phase=phase, sparsity=dict(sp),
                  bits=None if bt is None else dict(bt), accuracy=float(acc), file_bytes=fb,
                  predicted_bytes=predicted, meets_budget=meets, accepted=accepted, note=note,
                  seconds=secs, bias_bits=bias_bits, ecsq_delta=ecsq_delta,
                  confirm_accuracy=c_acc, confirmed=confirmed)
        rounds.append(r)
        if meets and confirmed is not False and (best is None
                                                 or fb < rounds[best[0]].file_bytes):
            best = (r.index, copy.deepcopy(m))
        kept = {n: f"{100 * (1 - s):.1f}" for n, s in sp.items()}
        log(f"auto: {phase:>7} #{r.index}: validation {100 * acc:.2f} % "
            f"({'meets' if meets else 'misses'} budget), {fb:,} bytes, kept % {kept}"
            + (f", bits {bt}" if bt else "") + (f" - {note}" if note else "")
            + ("" if confirmed is None or phase == "trained" else
               f" [confirmation {100 * c_acc:.2f} %: "
               + ("meets" if confirmed else "misses") + "]"))
        return r

    window = max(base - floor, 0.003)  # a close miss: by less than the budget, at least 0.3 pp

    def train_and_measure(m, t0, iterations, target, reserve_s=0.0):
        """Train ``m`` ``iterations`` (retraining or fine-tuning) and evaluate it. A close miss
        of ``target`` is trained ``recover_iterations`` more and measured again (a short round
        is the cheapest, not the best, judge of a model). Returns the accuracy and a note."""
        if iterations:
            train_fn(m, iterations)
        m.eval()
        acc = float(eval_fn(m))
        if acc < target and recover_iterations and acc >= target - window and clock.allows(
                (clock.now() - t0) * recover_iterations / max(1, iterations),
                reserve=reserve_s):
            missed = acc
            train_fn(m, recover_iterations)
            m.eval()
            acc = float(eval_fn(m))
            return acc, (f"; {100 * missed:.2f} % after {iterations} iterations, "
                         f"{recover_iterations} more to recover")
        return acc, ""

    t_price = clock.now()
    record("trained", {n: 0.0 for n in names}, None, base, cur, None, True, "", 0.0)
    price_secs = clock.now() - t_price  # pricing every layer's file bytes once

    # ---- pruning rounds -------------------------------------------------------------------
    good = copy.deepcopy(cur)
    good_acc = base
    good_sp = {n: 0.0 for n in names}
    # what weight sharing starts from: the last accepted pruned model that the confirmation
    # did not refuse (sharing a model it refused seldom gives one it accepts)
    base_pick = (rounds[0].file_bytes, good, good_acc, good_sp)

    def pick_for_sharing(m, acc, sp):
        nonlocal base_pick
        if rounds[-1].confirmed is not False:
            base_pick = (rounds[-1].file_bytes, m, acc, dict(sp))
    prune_floor = floor + share_reserve * (base - floor) if share_attempts else floor
    prune_budget = (1 - margin) * budget
    scale = 1.0
    stopped = "allocation saturated"
    n_rounds = 0
    out_of = ""  # set when rounds or time ran out: no further cycle
    for cycle in range(max(1, cycles)):
        caps: dict[str, float] = {}
        retry: dict[str, float] | None = None
        idle = 0
        cycle_backoffs = 0
        rounds_before = report.prune_rounds
        if cycle:
            log(f"auto: pruning cycle {cycle + 1}: caps lifted after the final retraining")
        while True:
            if n_rounds >= max_rounds:
                stopped = out_of = "max rounds"
                break
            if not clock.allows(reserve=reserve()):
                stopped = out_of = "time budget"
                break
            if retry is not None:
                target, retry = retry, None
                alloc_note = "back-off retry"
                predicted = None
            else:
                alloc = allocate(costs.layers, dp, ds, sp_grid, bit_grid, prune_budget * scale,
                                 fixed_bytes=costs.fixed_bytes, min_sparsity=good_sp,
                                 max_sparsity=caps)
                report.allocations.append({"phase": "prune", "scale": scale, **alloc.to_dict()})
                # at most halve (max_step) what a layer keeps in one round; a later cycle
                # starts at the edge its predecessor found, so its steps are finer
                step = max_step / 2 ** cycle
                target = {n: min(max(good_sp[n], alloc.sparsity[n]), caps.get(n, 1.0),
                                 1 - (1 - step) * (1 - good_sp[n]))
                          for n in names}
                if min_gain:
                    target = _worth_a_round(target, alloc.sparsity, good_sp, alloc.bits, costs,
                                            min_gain)
                alloc_note = f"allocation for {prune_budget * scale:.3g} pp predicted"
                predicted = alloc.predicted_bytes
            if all(target[n] <= good_sp[n] + 1e-9 for n in names):
                idle += 1
                if scale >= 2.0 ** 16 or idle > 20:
                    stopped = "allocation saturated"
                    break
                scale *= 2
                continue
            idle = 0
            t = clock.now()
            cur = copy.deepcopy(good)
            prune_(cur, PruneConfig(sparsity=dict(target)))
            acc, tuned = train_and_measure(cur, t, retrain_iterations, prune_floor, reserve())
            n_rounds += 1
            ok = acc >= prune_floor
            alloc_note += tuned
            secs = clock.now() - t
            clock.last = max(clock.last, secs)
            record("prune", target, None, acc, cur, predicted, ok,
                   alloc_note if ok else f"{alloc_note}; " + (
                       "breaks the budget" if acc < floor else
                       "within the budget but not the reserve left for sharing"), secs)
            clock.last = max(clock.last, clock.now() - t)  # pricing the file included
            if ok:
                good, good_acc, good_sp = cur, acc, dict(target)
                pick_for_sharing(good, good_acc, good_sp)
                report.prune_rounds += 1
                # the one-shot curves overstate what retraining leaves: grow faster while the
                # measured drop uses little of the budget, slower close to it
                used = (base - acc) * 100 / budget if budget > 0 else 1.0
                scale *= 4.0 if used < 0.25 else 2.0 if used < 0.6 else 1.3
                continue
            report.backoffs += 1
            cycle_backoffs += 1
            if cycle_backoffs > max_backoffs:
                stopped = "max back-offs"
                break
            # the layers that hurt most: the largest predicted increase of drop in this round
            hurt = {n: _interp(sp_grid, dp[n], target[n]) - _interp(sp_grid, dp[n], good_sp[n])
                    for n in names if target[n] > good_sp[n] + 1e-9}
            order = sorted(hurt, key=hurt.get, reverse=True)
            total = sum(max(0.0, v) for v in hurt.values())
            chosen, acc_hurt = [], 0.0
            if total <= 0:  # the curves did not see it coming: back off every layer that moved
                chosen = order
            for n in order if total > 0 else ():
                chosen.append(n)
                acc_hurt += max(0.0, hurt[n])
                if acc_hurt >= 0.5 * total:
                    break
            retry = dict(target)
            for n in chosen:
                kept = math.sqrt((1 - good_sp[n]) * (1 - target[n]))  # halfway, in log kept
                cap = 1 - kept
                if cap - good_sp[n] < 0.005:
                    cap = good_sp[n]
                caps[n] = cap
                retry[n] = cap
            log(f"auto: back-off {report.backoffs} ({cycle_backoffs}/{max_backoffs} in this "
                "cycle): raising the kept fraction of "
                + ", ".join(f"{n} to {100 * (1 - caps[n]):.2f} %" for n in chosen))
            if all(retry[n] <= good_sp[n] + 1e-9 for n in names):
                retry = None
            cur = good
        gained = False
        if final_retrain_iterations and report.prune_rounds > rounds_before and clock.allows(
                clock.last * max(1.0, final_retrain_iterations / max(1, retrain_iterations)),
                reserve=reserve()):
            t = clock.now()
            m = copy.deepcopy(good)
            train_fn(m, final_retrain_iterations)
            m.eval()
            acc = float(eval_fn(m))
            secs = clock.now() - t
            ok = acc >= prune_floor
            record("prune", good_sp, None, acc, m, None, ok,
                   f"final retraining of cycle {cycle + 1}, {final_retrain_iterations} "
                   "iterations", secs)
            if ok:
                gained = acc > good_acc
                good, good_acc = m, acc
                pick_for_sharing(good, good_acc, good_sp)
        # another cycle only if this one moved, its final retraining left room, and there is
        # time and rounds for it
        if out_of or not gained:
            break
        if cycle + 1 < max(1, cycles):
            scale = max(1.0, scale / 4)
    report.stopped_by = stopped

    # ---- weight sharing ----------------------------------------------------------------
    if base_pick[1] is not good:
        log(f"auto: sharing starts from the last pruned model the confirmation accepted "
            f"({base_pick[0]:,} bytes), not the last one accepted")
    _, good, good_acc, good_sp = base_pick
    if share_attempts and clock.allows():
        good.eval()
        s2 = sensitivity(good, eval_fn=eval_fn, sparsities=(0.0,), bits=bit_grid,
                         filter_fn=filter_fn, progress=progress)
        report.share_sensitivity = s2.to_dict()
        refs = {ref.name: ref for ref in compressible_layers(good, filter_fn)}
        c2 = {}
        for n in names:
            w = refs[n].weight.detach().float().cpu().numpy()
            c2[n] = np.array([[layer_bytes(w, 0.0, b, gap_bits=gap[refs[n].kind],
                                           name=f"{n}.weight") for b in bit_grid]])
        zero = {n: np.zeros(1) for n in names}
        ds2 = {n: s2.share_drop(n) for n in names}
        left = 100 * (good_acc - floor)
        share_scale, tried = 1.0, []
        lo = hi = None  # the largest share_scale that met the budget, the smallest that did not
        share_bits = None  # (round, bits) of the smallest k-means sharing that met the budget
        # (and was confirmed, when there is a confirmation)

        def tune(m, t0):
            return train_and_measure(m, t0, finetune_iterations, floor)

        for attempt in range(share_attempts):
            if not clock.allows():
                report.stopped_by += "; time budget during sharing"
                break
            alloc = allocate(c2, zero, ds2, [0.0], bit_grid, max(0.0, left) * (1 - margin)
                             * share_scale, fixed_bytes=costs.fixed_bytes)
            report.allocations.append({"phase": "share", "scale": share_scale,
                                       **alloc.to_dict()})
            if alloc.bits in tried:
                break
            tried.append(alloc.bits)
            t = clock.now()
            m = copy.deepcopy(good)
            share_weights_(m, ShareConfig(bits=dict(alloc.bits)), filter_fn=filter_fn)
            acc, tuned = tune(m, t)
            secs = clock.now() - t
            clock.last = max(clock.last, secs)
            ok = acc >= floor
            record("share", good_sp, alloc.bits, acc, m, alloc.predicted_bytes, ok,
                   f"attempt {attempt + 1}{tuned}" + ("" if ok else "; breaks the budget"),
                   secs)
            clock.last = max(clock.last, clock.now() - t)
            # a sharing the confirmation refuses is not tried bolder: the next attempt keeps
            # more bits, as after a miss on validation (the confirmation vetoes, never proposes)
            if ok and rounds[-1].confirmed is not False:
                if share_bits is None or (
                        rounds[-1].file_bytes < rounds[share_bits[0]].file_bytes):
                    share_bits = (rounds[-1].index, dict(alloc.bits))
                lo = share_scale
            else:
                report.backoffs += 1
                hi = share_scale
            # three times bolder after a success, three times more careful after a miss; once
            # both are known, halfway between them (in log scale): the largest scale that
            # worked and the smallest that did not bracket the bits worth trying
            share_scale = (lo * 3 if hi is None else hi / 3 if lo is None
                           else math.sqrt(lo * hi))
        if share_bits is not None and ecsq_deltas:
            _share_ecsq(good, good_sp, share_bits[1], ecsq_deltas, importance_fn, tune, floor,
                        filter_fn, record, clock, report)
    # ---- biases ---------------------------------------------------------------------------
    if bias_bits and best is not None:
        _share_biases(best, rounds, bias_bits, filter_fn, eval_fn, floor, record, clock,
                      2 * per_eval + price_secs)
    assert best is not None  # the trained model meets the budget (budget >= 0)
    idx, chosen_model = best
    r = rounds[idx]
    report.chosen = idx
    report.sparsity, report.bits, report.bias_bits = dict(r.sparsity), r.bits, r.bias_bits
    report.ecsq_delta = r.ecsq_delta
    report.importance = ("importance_fn" if r.ecsq_delta is not None and importance_fn is not None
                         else None)
    report.accuracy, report.file_bytes = r.accuracy, r.file_bytes
    report.seconds = clock.elapsed()
    if journal is not None:
        journal.flush()
    log(f"auto: chose #{idx} ({r.phase}): validation {100 * r.accuracy:.2f} %, "
        f"{r.file_bytes:,} bytes ({report.ratio:.1f}x smaller than dense float32), "
        f"{report.seconds:.0f} s; stopped by {report.stopped_by}")
    return chosen_model, report


def _share_ecsq(good, sparsity, bits, deltas, importance_fn, tune, floor, filter_fn, record,
                clock, report):
    """Entropy-constrained sharing of the pruned model ``good`` at the k-means attempt's
    ``bits``, ``d`` bits per weight below k-means's rate for each of ``deltas`` in turn, until
    one meets the budget (each fine-tuned like a k-means attempt and recorded, so it becomes the
    best model when its file is smaller)."""
    importance = None
    for d in deltas:
        if not clock.allows():
            report.stopped_by += "; time budget before entropy-constrained sharing"
            break
        t = clock.now()
        if importance is None and importance_fn is not None:
            importance = dict(importance_fn(good))
        m = copy.deepcopy(good)
        share_weights_(m, ShareConfig(bits=dict(bits), method="ecsq", rate_delta=float(d)),
                       filter_fn=filter_fn, importance=importance)
        acc, tuned = tune(m, t)
        secs = clock.now() - t
        clock.last = max(clock.last, secs)
        ok = acc >= floor
        record("share", sparsity, bits, acc, m, None, ok,
               f"entropy-constrained, {d:g} bits below k-means"
               + (" (importance-weighted)" if importance else "") + tuned
               + ("" if ok else "; breaks the budget"), secs, ecsq_delta=float(d))
        if ok:
            break


def _share_biases(best, rounds, bias_bits, filter_fn, eval_fn, floor, record, clock, estimate):
    """Replace the biases of the best model's compressible layers by 1-D k-means centres at
    each of ``bias_bits`` in turn (no retraining). Each result is recorded, and so becomes the
    best model when it meets the budget with a smaller file; the first that breaks the budget
    ends the phase. Each step is an evaluation or two and a pricing, not a round: the time
    budget is checked against ``estimate`` seconds (then the longest step so far)."""
    idx, model = best
    r0 = rounds[idx]
    for b in bias_bits:
        if not clock.allows(estimate):
            break
        t = clock.now()
        m = copy.deepcopy(model)
        if not share_biases_(m, b, filter_fn):
            continue
        m.eval()
        acc = float(eval_fn(m))
        ok = acc >= floor
        record("bias", r0.sparsity, r0.bits, acc, m, None, ok,
               f"biases shared at {b} bits ({2 ** b} values per layer)"
               + ("" if ok else "; breaks the budget"), clock.now() - t, bias_bits=b,
               ecsq_delta=r0.ecsq_delta)
        estimate = max(estimate, clock.now() - t)
        if not ok:
            break
        model = m
