"""The ``clinsynth`` command's entry point (also ``python -m clinsynth``).

The command's offline and cache environment (``clinsynth.env``) is set here, before the
CLI module loads dspy, litellm and transformers; importing the library sets nothing.
"""

from __future__ import annotations

import sys

from clinsynth.env import apply_environment_defaults


def main(argv: list[str] | None = None) -> int:
    apply_environment_defaults()
    from clinsynth.app.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
