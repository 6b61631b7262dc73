import sys
from pathlib import Path

# worker processes (spawn) inherit sys.path: run_helpers must be importable by name there
sys.path.insert(0, str(Path(__file__).parent))
