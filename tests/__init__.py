"""Tests; see conftest.py for the shared fixtures."""

# Offline and cache environment before any module of this package imports dspy.
from clinsynth.env import apply_environment_defaults

apply_environment_defaults()
