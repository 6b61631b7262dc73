"""A journal of what an automatic search measured, so that a killed search resumes exactly.

:func:`netsqueeze.auto.compress` is a deterministic program of its inputs apart from three
things: the models ``train_fn`` leaves, the numbers ``eval_fn`` / ``confirm_fn`` / the pricing
return, and the clock. A :class:`Journal` records each of them in the order the search asks for
them. A resumed search runs the same program again from the start: each question already
answered is answered from the journal (a training call loads the weights it left instead of
training again), so the search takes the same path, cheaply, up to where the first run stopped,
and goes on from there live.

Committing is the caller's: ``commit(entries)`` is called after every training call (with the
file of its weights written first) and by :meth:`Journal.flush`. Evaluations and clock readings
between two commits are kept in memory; a kill loses them, and the resumed search measures
them again (the same numbers: evaluation is deterministic given the weights; the clock charges
the time the search computes, not the time it was stopped).

``train_fn`` must leave the same weights for the same model and the same call number:
:attr:`Journal.train_calls` is that number (the count of training calls before this one), for a
``train_fn`` that seeds its batch order with it. The weights files hold tensors only and are
read without unpickling code.

Disk stays bounded: :meth:`Journal.keep` (called by the search before each training) deletes the
weights no model the search still holds came from. Their entries stay, without a file; a resumed
search leaves such a model untrained, which changes nothing, since every number measured on it
is recorded and nothing the search keeps is derived from its weights.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path

from torch import nn

from netsqueeze.errors import FormatError

__all__ = ["Journal", "weights_files"]

_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.pt$")
#: Attribute naming the weights file a model's weights came from (copies carry it too).
_TAG = "_netsqueeze_journal_file"


def weights_files(entries) -> list[str]:
    """The weights files a journal's entries name (any other file beside them is a leftover of
    a write a kill interrupted)."""
    return [e["file"] for e in entries
            if isinstance(e, dict) and e.get("kind") == "train"
            and isinstance(e.get("file"), str) and _FILE.match(e["file"])]


class Journal:
    """Answers of a search, replayed in order and then recorded.

    Parameters
    ----------
    entries : list of dict
        What an earlier run recorded (``[]`` for a fresh one); extended in place.
    folder : path
        Where the weights each training call left are saved (``{prefix}{n}.pt``).
    commit : callable ``(entries) -> None``
        Makes ``entries`` durable (one atomic write), after the weights file it names.
    fix : str
        The remedy named by every error about a journal that does not fit this search.
    """

    def __init__(self, entries: list, folder: str | Path, commit: Callable[[list], None], *,
                 prefix: str = "auto-", fix: str = "rerun without --resume to start over"):
        if not isinstance(entries, list):
            raise FormatError(f"the search's journal is not a list; {fix}")
        self.entries = entries
        self.folder = Path(folder)
        self._commit = commit
        self.prefix = prefix
        self.fix = fix
        self.pos = 0
        self.train_calls = 0
        self._offset: float | None = None  # live clock = perf_counter() + offset
        self._last_clock = 0.0

    def _next(self, kind: str) -> dict | None:
        if self.pos >= len(self.entries):
            return None
        e = self.entries[self.pos]
        if not isinstance(e, dict) or e.get("kind") != kind:
            got = e.get("kind") if isinstance(e, dict) else type(e).__name__
            raise FormatError(f"the search's journal does not fit this search (entry "
                              f"{self.pos} is {got!r} where the search asks for {kind!r}); "
                              f"{self.fix}")
        self.pos += 1
        return e

    def _number(self, e: dict) -> float:
        v = e.get("value")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise FormatError(f"the search's journal has no valid value at entry "
                              f"{self.pos - 1} ({v!r}); {self.fix}")
        return float(v)

    def _add(self, entry: dict) -> None:
        self.entries.append(entry)
        self.pos += 1

    def value(self, kind: str, fn: Callable[[], float]) -> float:
        """``fn()`` the first time; its recorded value on a resumed search."""
        e = self._next(kind)
        if e is not None:
            return self._number(e)
        v = float(fn())
        self._add({"kind": kind, "value": v})
        return v

    def train(self, train_fn: Callable[[nn.Module, int], object], model: nn.Module,
              iterations: int) -> None:
        """``train_fn(model, iterations)``, its weights saved and committed; on a resumed
        search, the weights it left loaded instead."""
        from netsqueeze.nn.train import load_state, save_state

        e = self._next("train")
        self.train_calls += 1
        if e is not None:
            name = e.get("file")
            if name is None:  # released: no later step reads these weights
                setattr(model, _TAG, None)
                return
            if not isinstance(name, str) or not _FILE.match(name):
                raise FormatError(f"the search's journal names no weights file at entry "
                                  f"{self.pos - 1} ({name!r}); {self.fix}")
            path = self.folder / name
            if not path.is_file():
                raise FormatError(f"{path} is missing; {self.fix}")
            sd = load_state(path, "cpu", what="weights of the search", fix=self.fix)
            if not isinstance(sd, dict):
                raise FormatError(f"{path}: not the weights of a model; {self.fix}")
            try:
                model.load_state_dict(sd, strict=True)
            except (RuntimeError, ValueError, TypeError, KeyError) as exc:
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                raise FormatError(f"{path}: does not fit the model being searched "
                                  f"({type(exc).__name__}: {first}); {self.fix}") from None
            setattr(model, _TAG, name)
            return
        train_fn(model, iterations)
        name = f"{self.prefix}{len(self.entries):05d}.pt"
        save_state({k: v.detach().cpu() for k, v in model.state_dict().items()},
                   self.folder / name)
        setattr(model, _TAG, name)
        self._add({"kind": "train", "file": name})
        self.flush()

    def keep(self, models) -> None:
        """Delete the weights files that none of ``models`` (those the search still holds)
        came from, except the last one; their entries are committed without a file first."""
        live = {getattr(m, _TAG, None) for m in models if m is not None}
        trains = [i for i, e in enumerate(self.entries[:self.pos])
                  if isinstance(e, dict) and e.get("kind") == "train"
                  and isinstance(e.get("file"), str)]
        if trains:
            live.add(self.entries[trains[-1]]["file"])
        drop = [i for i in trains if self.entries[i]["file"] not in live]
        if not drop:
            return
        names = [self.entries[i]["file"] for i in drop]
        for i in drop:
            self.entries[i] = {"kind": "train", "file": None}
        self.flush()  # the record first: a kill after it leaves only stray files behind
        for name in names:
            (self.folder / name).unlink(missing_ok=True)

    def now(self) -> float:
        """A clock reading (seconds): recorded ones first, then ``perf_counter`` carried on
        from the last of them, so that the time the search was stopped does not count."""
        e = self._next("clock")
        if e is not None:
            self._last_clock = self._number(e)
            return self._last_clock
        if self._offset is None:
            self._offset = self._last_clock - time.perf_counter()
        v = time.perf_counter() + self._offset
        self._add({"kind": "clock", "value": v})
        return v

    def flush(self) -> None:
        """Commit every entry recorded so far."""
        self._commit(self.entries)
