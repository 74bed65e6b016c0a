"""Eval suites (``python -m evals.run SUITE``): data + systems + scorers, one file a suite."""
