"""Eval suites (``python -m evals.run SUITE``): data + systems + scorers, one file a suite."""

# `python -m evals.X` from a checkout loads this file as the top-level package "evals" (the
# installed name is clinsynth.evals): the process is then a clinsynth command, and takes the
# commands' offline and cache environment before dspy, litellm and transformers load.
# Imported as clinsynth.evals (a library use), it sets nothing.
if __name__ == "evals":
    from clinsynth.env import apply_environment_defaults

    apply_environment_defaults()
