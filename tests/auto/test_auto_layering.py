"""netsqueeze.auto sits below experiments/ and cli/: it must never import them."""

import subprocess
import sys
from pathlib import Path

import netsqueeze

AUTO = Path(netsqueeze.__file__).parent / "auto"


def test_auto_imports_nothing_above_it():
    modules = sorted(p.stem for p in AUTO.glob("*.py") if p.stem != "__init__")
    assert modules
    code = (
        "import sys\nimport netsqueeze.auto\n"
        + "".join(f"import netsqueeze.auto.{m}\n" for m in modules)
        + "bad = sorted(m for m in sys.modules if m.startswith('netsqueeze.experiments')"
        " or m.startswith('netsqueeze.cli'))\nprint(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"netsqueeze.auto imported: {out.stdout.strip()}"
