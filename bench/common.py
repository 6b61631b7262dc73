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


def machine_info(packages: tuple[str, ...] = ()) -> dict:
    """Date, CPU, memory, load, and the versions of numpy, torch and ``packages``."""
    from importlib.metadata import PackageNotFoundError, version

    info = {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                None,
            )
    except OSError:
        info["cpu"] = None
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_bytes"] = pages * page
    except (ValueError, OSError, AttributeError):
        info["memory_bytes"] = None
    for name in ("numpy", "torch", *packages):
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = None
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    return info


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory, in MiB (Linux: ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
