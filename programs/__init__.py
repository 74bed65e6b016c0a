"""DSPy modules (data-to-label, label-to-data) and their command-line entry points."""
