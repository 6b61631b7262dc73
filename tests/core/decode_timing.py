"""Time and memory of decoding hostile files, shared by the container and rANS tests."""

from __future__ import annotations

import time
import tracemalloc

from netsqueeze import FormatError
from netsqueeze.core import container as C


def cpu_seconds(fn):
    """(CPU seconds, result or FormatError) of ``fn()``."""
    t0 = time.process_time()
    try:
        result = fn()
    except FormatError as e:
        result = e
    return time.process_time() - t0, result


def peak_bytes(fn):
    """Peak traced memory of ``fn()`` (tracemalloc slows Python loops: time it apart)."""
    tracemalloc.start()
    try:
        cpu_seconds(fn)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def decode_everything(data):
    f = C.read_nsq(data)
    arrays = f.arrays()
    f.stats()
    return arrays
