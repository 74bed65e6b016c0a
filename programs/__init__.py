"""DSPy modules (data-to-label, label-to-data) and their command-line entry points."""

# Offline and cache environment before any module of this package imports dspy.
from clinsynth.env import apply_environment_defaults

apply_environment_defaults()
