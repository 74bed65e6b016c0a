"""DSPy signatures, one per file; label types are specialised per taxonomy at run time."""

# Offline and cache environment before any module of this package imports dspy.
from clinsynth.env import apply_environment_defaults

apply_environment_defaults()
