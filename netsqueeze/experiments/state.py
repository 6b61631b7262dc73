"""Progress of a long run, kept beside its outputs so that an interrupted run can resume.

A run folder ``OUT`` holds the run's outputs and ``OUT/.state/``:

* ``progress.json`` — what the run has finished (:class:`RunState`), written at the start of a
  run and rewritten (atomically) after each finished unit of work;
* model snapshots (:func:`save_model_snapshot`) and training checkpoints.

Committing a unit of work is **one** write: a new snapshot goes to a file of its own name first,
then the progress record that names it replaces ``progress.json``. A kill before that write
leaves the old record, which names the old snapshot, still in place; a kill after it leaves the
new one. Files the record does not name (a snapshot written just before a kill, a finished
stage's training checkpoint) are removed by :meth:`RunState.keep_only`.

Nothing here unpickles code: snapshots and checkpoints hold tensors and builtins only and are
read with ``torch.load(weights_only=True)`` (:func:`netsqueeze.nn.train.load_state`).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from torch import nn

from netsqueeze.core.fileio import atomic_write_json, remove_stray_temps
from netsqueeze.errors import FormatError
from netsqueeze.nn.prune import apply_masks_, masks
from netsqueeze.nn.share import apply_codebooks_, codebooks, share_report
from netsqueeze.nn.train import load_state, save_state

__all__ = ["START_OVER", "RunState", "load_model_snapshot", "save_model_snapshot"]

#: The fix named by every error about a run's saved state.
START_OVER = "rerun without --resume to start over"
#: Version of progress.json's layout; a record of another version is not resumed.
PROGRESS_VERSION = 2
SNAPSHOT_FORMAT = "netsqueeze-run-snapshot"
#: Names a progress record may give its files: plain names inside ``.state/``.
_STATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.pt$")


class RunState:
    """A JSON record of what a run has finished, in ``out_dir/.state/progress.json``.

    Parameters
    ----------
    out_dir : path
        The run's output folder.
    fingerprint : dict
        Everything that defines the run; resuming a run with another fingerprint is refused.
    resume : bool
        Continue from a saved state; otherwise any earlier state is removed (and said so).
    empty : dict
        Initial content of ``data`` (besides the fingerprint) for a fresh run; a resumed record
        must hold each of its keys with a value of the same type.
    outputs : iterable of str
        Names of the files the run writes into ``out_dir``. A run that starts afresh removes
        those a previous run left there (and says so), so that an interrupted run never leaves
        its outputs beside another run's.
    log : callable
        Receives the one-line notes (progress wiped, no progress to resume, outputs removed).

    Attributes
    ----------
    resumed : bool
        Whether ``data`` was read from an interrupted run.
    data : dict
        The record; change it, then :meth:`save` (one atomic write).
    """

    def __init__(self, out_dir: str | Path, fingerprint: dict, resume: bool, empty: dict, *,
                 outputs: Iterable[str] = (), log: Callable[[str], None] = print):
        self.out = Path(out_dir)
        self.dir = self.out / ".state"
        self.file = self.dir / "progress.json"
        self.resumed = False
        empty = json.loads(json.dumps(empty))
        self.data = {"version": PROGRESS_VERSION, "fingerprint": fingerprint, **empty}
        # leftovers of writes a kill interrupted before their rename: never part of any state
        remove_stray_temps(self.out)
        remove_stray_temps(self.dir)
        if resume and self.file.exists():
            old = self._read(empty)
            if old.get("fingerprint") != fingerprint:
                raise ValueError(
                    f"{self.file} belongs to a run with other settings (model, data, recipe or "
                    f"sweep); {START_OVER}, or resume with the settings of that run"
                )
            self.data = old
            self.resumed = True
            return
        if resume:
            log(f"note: no saved progress in {self.dir} to resume; starting a fresh run")
        elif self.file.exists():
            log(f"note: discarding the saved progress of an interrupted run in {self.dir} "
                "(use --resume to continue such a run); starting over")
        self._wipe()
        old_outputs = [n for n in outputs if (self.out / n).is_file()]
        if old_outputs:
            for name in old_outputs:
                (self.out / name).unlink(missing_ok=True)
            log(f"note: removed a previous run's outputs from {self.out} "
                f"({', '.join(old_outputs)}) before starting over")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.save()  # progress exists from the start: an early interruption can resume too

    def _read(self, empty: dict) -> dict:
        try:
            old = json.loads(self.file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(f"{self.file}: corrupt saved progress ({exc}); {START_OVER}") \
                from None
        if not isinstance(old, dict) or old.get("version") != PROGRESS_VERSION:
            raise FormatError(
                f"{self.file}: not saved progress of this version of netsqueeze; {START_OVER}"
            )
        for key, value in empty.items():
            if not isinstance(old.get(key), type(value)):
                raise FormatError(f"{self.file}: corrupt saved progress (no valid {key!r}); "
                                  f"{START_OVER}")
        return old

    def _wipe(self) -> None:
        # the record goes first: a kill part-way through leaves no record naming missing files
        self.file.unlink(missing_ok=True)
        if self.dir.exists():
            shutil.rmtree(self.dir)

    def path(self, name: str) -> Path:
        """A file of this state (model snapshots, training checkpoints)."""
        return self.dir / name

    def named(self, key: str) -> Path:
        """The state file whose name ``data[key]`` holds.

        Raises ``FormatError`` when the record names none, names something that is not a plain
        ``*.pt`` file name in ``.state`` (a record edited to point elsewhere), or a missing file.
        """
        name = self.data.get(key)
        if not isinstance(name, str) or not _STATE_NAME.match(name):
            raise FormatError(f"{self.file}: {key!r} is not a state file name ({name!r}); "
                              f"{START_OVER}")
        p = self.path(name)
        if not p.is_file():
            raise FormatError(f"{self.file} names {p}, which is missing; {START_OVER}")
        return p

    def check_files(self) -> None:
        """Read every ``*.pt`` file of the state once (without unpickling code), so that a
        corrupt or planted one is reported before any work, with the fix."""
        for p in sorted(self.dir.glob("*.pt")):
            load_state(p, "cpu", what="saved run state", fix=START_OVER)

    def keep_only(self, names: Iterable[str]) -> None:
        """Remove the state's files other than ``progress.json`` and ``names``."""
        keep = {"progress.json", *names}
        for p in self.dir.iterdir():
            if p.name not in keep and p.is_file():
                p.unlink(missing_ok=True)

    def save(self) -> None:
        """Write the record: one atomic write commits everything changed in ``data``."""
        atomic_write_json(self.file, self.data)

    def append(self, key: str, item) -> None:
        """Add ``item`` to the list ``data[key]`` and save."""
        self.data[key].append(item)
        self.save()

    def clear(self) -> None:
        """Remove the state once the run's outputs are written."""
        self._wipe()


# ------------------------------------------------------------------------------------------
# model snapshots: tensors and builtins only
# ------------------------------------------------------------------------------------------


def save_model_snapshot(model: nn.Module, path: str | Path) -> None:
    """Save ``model`` (plain, pruned, or sharing weights) so that
    :func:`load_model_snapshot` restores it exactly, without unpickling code.

    The file holds the ``state_dict`` (masks, centroids and indices included), the keep-masks
    of the pruned parameters and the codebooks and index bits of the parameters sharing
    weights, by target name (a tied parameter once).
    """
    import torch

    books = codebooks(model)
    bits = {r.name: int(r.bits) for r in share_report(model)}
    shared = {name: {"centroids": torch.from_numpy(b.centroids),
                     "index": torch.from_numpy(b.index.astype("int64")),
                     "bits": bits[name]}
              for name, b in books.items()}
    pruned = {name: m.cpu() for name, m in masks(model).items() if name not in books}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_state({"format": SNAPSHOT_FORMAT, "state_dict": state, "pruned": pruned,
                "shared": shared}, path)


def load_model_snapshot(path: str | Path, model: nn.Module, *, fix: str = START_OVER) -> nn.Module:
    """Restore a snapshot into a fresh instance ``model`` of the same architecture.

    Prunes and shares the parameters the snapshot says were pruned / shared, then loads the
    tensors with ``strict=True``; returns ``model``.

    Raises
    ------
    FormatError
        The file is corrupt, planted (anything but tensors and builtins) or does not fit
        ``model``; the message names the file and ``fix``.
    """
    p = Path(path)
    obj = load_state(p, "cpu", what="model snapshot", fix=fix)
    ok = (isinstance(obj, dict) and obj.get("format") == SNAPSHOT_FORMAT
          and isinstance(obj.get("state_dict"), dict) and isinstance(obj.get("pruned"), dict)
          and isinstance(obj.get("shared"), dict)
          and all(isinstance(b, dict) for b in obj["shared"].values()))
    if not ok:
        raise FormatError(f"{p}: not a netsqueeze model snapshot; {fix}")
    sd = obj["state_dict"]
    try:
        apply_masks_(model, obj["pruned"])
        shared = obj["shared"]
        apply_codebooks_(model, {n: (b["centroids"], b["index"]) for n, b in shared.items()},
                         bits={n: int(b["bits"]) for n, b in shared.items()})
        model.load_state_dict(sd, strict=True)
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise FormatError(f"{p}: does not fit the {type(model).__name__} network "
                          f"({type(exc).__name__}: {first}); {fix}") from None
    return model
