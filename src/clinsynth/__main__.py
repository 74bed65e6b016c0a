"""``python -m clinsynth``: the same as the ``clinsynth`` command."""

import sys

from clinsynth.cli import main

sys.exit(main())
