"""DSPy signatures, one per file; label types are specialised per taxonomy at run time."""
