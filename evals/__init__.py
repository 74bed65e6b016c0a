"""Eval suites (``python -m evals.run SUITE``): data + systems + scorers, one file a suite."""

# Offline and cache environment before any module of this package imports dspy.
from clinsynth.env import apply_environment_defaults

apply_environment_defaults()
