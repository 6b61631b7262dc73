"""Progress of a long run, kept beside its outputs so that an interrupted run can resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from netsqueeze.core.fileio import atomic_write_json

__all__ = ["RunState"]


class RunState:
    """A JSON record of what a run has finished, in ``out_dir/.state/progress.json``.

    Parameters
    ----------
    out_dir : path
        The run's output folder.
    fingerprint : dict
        Everything that defines the run; resuming a run with another fingerprint is refused.
    resume : bool
        Continue from a saved state; otherwise any earlier state is removed.
    empty : dict
        Initial content of ``data`` (besides the fingerprint) for a fresh run.
    """

    def __init__(self, out_dir: str | Path, fingerprint: dict, resume: bool, empty: dict):
        self.dir = Path(out_dir) / ".state"
        self.file = self.dir / "progress.json"
        self.data = {"fingerprint": fingerprint, **json.loads(json.dumps(empty))}
        if resume and self.file.exists():
            old = json.loads(self.file.read_text(encoding="utf-8"))
            if old.get("fingerprint") != fingerprint:
                raise ValueError(
                    f"{self.file} belongs to a run with other settings (model, data, recipe or "
                    "sweep); rerun without --resume to start over, or with the settings of "
                    "that run"
                )
            self.data = old
        elif self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """A file of this state (model snapshots, training checkpoints)."""
        return self.dir / name

    def save(self) -> None:
        atomic_write_json(self.file, self.data)

    def append(self, key: str, item) -> None:
        """Add ``item`` to the list ``data[key]`` and save."""
        self.data[key].append(item)
        self.save()

    def clear(self) -> None:
        """Remove the state once the run's outputs are written."""
        shutil.rmtree(self.dir, ignore_errors=True)
