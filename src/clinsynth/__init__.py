"""clinsynth: LLM-generated training data for clinical text classifiers.

Importing the library changes nothing in the process: the offline and cache environment
(``clinsynth.env``) is set by the commands (``clinsynth``, ``python -m programs.*``,
``python -m evals.run``) before they load dspy, litellm or transformers.
"""

__version__ = "0.1.0"
