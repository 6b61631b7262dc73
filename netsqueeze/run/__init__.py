"""Where independent work runs: in this process, on local worker processes, or on Ray.

Sits beside :mod:`netsqueeze.nn`: it may use core/ and nn/, never experiments/, auto/ or cli/.
"""

from netsqueeze.run.executor import (
    Executor,
    InProcess,
    LocalProcesses,
    RayExecutor,
    WorkerLost,
    make_executor,
)

__all__ = ["Executor", "InProcess", "LocalProcesses", "RayExecutor", "WorkerLost",
           "make_executor"]
