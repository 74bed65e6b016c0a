"""Progress bars for long work (tqdm on a terminal, periodic lines in logs and CI)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, disable: bool = False, total: int | None = None) -> Iterator[T]:
    """Wrap ``items`` in a progress bar; off a terminal it updates at most every 10 s."""
    interactive = sys.stderr.isatty()
    return iter(
        tqdm(
            items,
            desc=desc,
            disable=disable,
            total=total,
            dynamic_ncols=True,
            mininterval=0.5 if interactive else 10.0,
            file=sys.stderr,
        )
    )
