"""clinsynth: LLM-generated training data for clinical text classifiers.

Importing the package sets the offline and cache environment (see ``clinsynth.env``)
before any of dspy, litellm or transformers can be imported through it.
"""

from clinsynth.env import apply_environment_defaults

apply_environment_defaults()

__version__ = "0.1.0"
