"""netsqueeze.core is numpy only: it must never import torch (nor anything above it)."""

import subprocess
import sys
from pathlib import Path

import netsqueeze.core

CORE = Path(netsqueeze.core.__file__).parent


def test_core_imports_no_torch():
    modules = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")
    assert modules, "no core modules found"
    code = (
        "import sys\n"
        + "".join(f"import netsqueeze.core.{m}\n" for m in modules)
        + "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')"
        " or m.startswith('netsqueeze.nn') or m.startswith('netsqueeze.experiments')"
        " or m.startswith('netsqueeze.cli') or m.startswith('netsqueeze.models'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"netsqueeze.core imported: {out.stdout.strip()}"


def test_importing_the_package_is_cheap():
    code = "import sys, netsqueeze; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
