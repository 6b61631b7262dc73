"""What every benchmark records about the machine and the run."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist"


def machine_info() -> dict:
    import numpy as np
    import torch

    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory, in MiB (Linux: ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
