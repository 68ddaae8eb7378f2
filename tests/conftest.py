"""Shared test set-up: the tests folder is importable (for the slow reference solvers)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
