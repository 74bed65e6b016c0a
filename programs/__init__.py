"""DSPy modules (data-to-label, label-to-data), the steps that run them, and their command-line entry points."""

# `python -m programs.X` from a checkout loads this file as the top-level package "programs" (the
# installed name is clinsynth.programs): the process is then a clinsynth command, and takes the
# commands' offline and cache environment before dspy, litellm and transformers load.
# Imported as clinsynth.programs (a library use), it sets nothing.
if __name__ == "programs":
    from clinsynth.env import apply_environment_defaults

    apply_environment_defaults()
