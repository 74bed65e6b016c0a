"""Progress bars for long work (tqdm on a terminal, periodic lines in logs and CI)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, disable: bool = False, total: int | None = None) -> Iterator[T]:
    """Wrap ``items`` in a progress bar; off a terminal it updates at most every 10 s."""
    return iter(progress_bar(total, desc, disable=disable, items=items))


def progress_bar(total: int | None, desc: str, initial: int = 0, disable: bool = False,
                 items: Iterable[T] | None = None) -> tqdm:  # fmt: skip
    """A progress bar advanced by ``update(n)`` (or over ``items``), starting at ``initial`` (a resumed run)."""
    interactive = sys.stderr.isatty()
    return tqdm(
        items,
        desc=desc,
        disable=disable,
        total=total,
        initial=initial,
        dynamic_ncols=True,
        mininterval=0.5 if interactive else 10.0,
        file=sys.stderr,
    )
