"""Shared test setup: makes ``tests/`` importable so every suite can use the
Decimal reference model as ``import reference_model``."""
import os
import sys

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
