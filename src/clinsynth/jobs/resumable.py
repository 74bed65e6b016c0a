"""The one resumable map every LM-backed step runs through (labelling, generation, round trips).

For each item not yet in the output file it calls the LM step with retries
(``clinsynth.jobs.runner``), writes each result as one flushed JSONL line at once (a killed
run loses at most the requests in flight), and records items that still fail in
``<out>.failures.jsonl``. A rerun skips finished items and retries failed ones with
fresh samples (rollouts past those already spent, so DSPy's cache cannot replay a
failure). An authentication error stops the run at once; ``max_consecutive_failures``
transport failures in a row (refused connections, timeouts, 5xx) stop it with one message
naming the endpoint; so does a request the run's ``--max-cost`` refuses (``clinsynth.llm.meter``).
Nothing written is lost either way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.records import Record, ResumableWriter, iter_jsonl, now_iso, side_path
from clinsynth.errors import BudgetExceeded, ClinsynthError, DataError
from clinsynth.jobs.runner import Attempt, map_with_retries
from clinsynth.llm.lm import REQUEST_TIMEOUT
from clinsynth.llm.meter import Limits
from clinsynth.progress import progress

T = TypeVar("T")


class EndpointError(ClinsynthError):
    """The LM endpoint is unusable (bad credentials, or not answering): the run stops."""


@dataclass(frozen=True)
class MapSettings:
    """How a resumable map runs; each default lives here."""

    attempts: int = 3  # tries per item (each a fresh sample after the first)
    threads: int = 1  # parallel requests, for endpoints that serve several
    max_consecutive_failures: int = 3  # transport failures in a row that stop the run
    show_progress: bool = True
    # Seconds per LM request: a hanging endpoint costs at most timeout x attempts per item.
    # The step opens its LM with it (clinsynth.llm.session.open_lm).
    timeout: float = REQUEST_TIMEOUT
    max_failures: int = 0  # failed items a run may leave and still count as a success (exit 0)
    # Budget and rate limits of the run's LM (--max-cost, --rpm, --tpm); the step opens its LM with them.
    limits: Limits = Limits()


@dataclass
class MapResult:
    done: int = 0  # items finished by this run
    skipped: int = 0  # items an earlier run had finished
    failed: int = 0  # items still failing after their attempts
    failures_path: Path | None = None
    outcomes: dict[str, Attempt] = field(default_factory=dict)  # this run's items, by key


def failures_path_for(out: Path) -> Path:
    return side_path(out, "failures.jsonl")


def read_failures(path: Path) -> dict[str, dict[str, Any]]:
    """Earlier failures by id (the last line for an id wins); older files used ``call_id``."""
    if not path.exists():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for _, obj in iter_jsonl(path):
        if isinstance(obj, dict):
            key = obj.get("id", obj.get("call_id"))
            if isinstance(key, str):
                out[key] = obj
    return out


def check_resume_matches(out: Path, texts: dict[str, str], source: str = "the input") -> set[str]:
    """Ids in ``out`` whose written text is this run's text for that id; a DataError if one differs.

    Resuming keys on the id *and* the sentence text (compared by hash, so a changed input
    is caught however its ids were made): a TXT file's ids are line numbers, so another
    file on the same ``--out`` would otherwise look finished and be silently skipped.
    """
    if not out.exists():
        return set()
    done: set[str] = set()
    with out.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.endswith("\n"):
                break  # a writer killed mid-line; the resumable writer drops it
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # done_ids names a malformed line
            if not isinstance(obj, dict) or obj.get("id") not in texts:
                continue
            key = obj["id"]
            written = obj.get("text")
            if isinstance(written, str) and _text_hash(written) != _text_hash(texts[key]):
                raise DataError(
                    f"holds sentence {key!r} with another text than {source} has for it, so it labels another "
                    "input; nothing was skipped or sent. Choose another --out, or delete this file to relabel",
                    path=out, line=line_no, field="text",
                )  # fmt: skip
            done.add(key)
    return done


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def resumable_map(
    fn: Callable[[T], Any],
    items: Sequence[T],
    key: Callable[[T], str],
    to_row: Callable[[T, Attempt], Record | dict[str, Any]],
    out: Path,
    handle: Any,
    settings: MapSettings = MapSettings(),
    desc: str = "",
    first_rollout: Callable[[T], int] | None = None,
    failure_info: Callable[[T], dict[str, Any]] | None = None,
    failures: Path | None = None,
) -> MapResult:
    """Run ``fn`` on each item whose ``key`` is not yet in ``out``; write ``to_row`` of each success.

    ``first_rollout(item)`` offsets an item's rollouts (e.g. a generation call's own
    sample); rollouts already spent by earlier runs (from the failures file) are added.
    ``failures`` (default ``<out>.failures.jsonl``) may be shared by several maps of one
    step: rows of ids a map is not given are kept.
    """
    failures_path = failures or failures_path_for(out)
    earlier = read_failures(failures_path)
    result = MapResult(failures_path=failures_path)
    with ResumableWriter(out) as writer:
        todo = [item for item in items if key(item) not in writer.done]
        result.skipped = len(items) - len(todo)
        for done in writer.done:  # finished since: no longer a failure
            earlier.pop(done, None)
        spent = {k: int(v.get("attempts") or 0) for k, v in earlier.items()}
        stream = map_with_retries(
            fn,
            todo,
            handle,
            settings.attempts,
            settings.threads,
            rollout_base=lambda item: (first_rollout(item) if first_rollout else 0) + spent.get(key(item), 0),
        )
        consecutive = 0
        budget_stop: str | None = None  # why the budget stopped the run, once it has
        failures_file = failures_path.open("a", encoding="utf-8") if todo else None
        try:
            for item, attempt in progress(stream, desc=desc, disable=not settings.show_progress, total=len(todo)):
                k = key(item)
                result.outcomes[k] = attempt
                if attempt.ok:
                    consecutive = 0
                    writer.write(to_row(item, attempt))
                    earlier.pop(k, None)
                    result.done += 1
                    continue
                if attempt.kind == "budget":  # nothing was sent for this item: not a failure
                    # Keep draining: answers already in flight on other threads are paid for and
                    # get written; the items not yet sent are refused by the meter at once.
                    meter = getattr(handle, "meter", None)
                    budget_stop = budget_stop or str(meter.stopped if meter is not None and meter.stopped
                                                     else attempt.error)  # fmt: skip
                    continue
                result.failed += 1
                failure = {
                    "id": k,
                    **(failure_info(item) if failure_info else {}),
                    "error": attempt.error,
                    "kind": attempt.kind,
                    "attempts": attempt.attempts + spent.get(k, 0),  # over all runs
                    "at": now_iso(),
                }
                earlier[k] = failure
                assert failures_file is not None
                failures_file.write(json.dumps(failure, ensure_ascii=False) + "\n")
                failures_file.flush()
                if attempt.kind == "auth":
                    raise EndpointError(
                        f"the endpoint {handle.endpoint.describe()} refused the credentials ({attempt.error}); "
                        "check the API key (environment or .env). Nothing written is lost: rerun to resume."
                    )
                consecutive = consecutive + 1 if attempt.kind == "transport" else 0
                if consecutive >= settings.max_consecutive_failures:
                    raise EndpointError(
                        f"the endpoint {handle.endpoint.describe()} is not answering: {consecutive} items in a row "
                        f"failed ({attempt.error}). {result.done} written to {out}; failures in {failures_path}. "
                        "Rerun to resume once it is up."
                    )
        finally:
            if failures_file is not None:
                failures_file.close()
            write_failures(failures_path, earlier)
    if budget_stop is not None:
        raise BudgetExceeded(
            f"{budget_stop}. {result.done} written to {out}; rerun with a larger --max-cost to resume."
        )
    return result


def write_failures(path: Path, rows: dict[str, dict[str, Any]]) -> None:
    """Rewrite a failures file whole (only what still fails, never half a file); none left: no file."""
    if rows:
        atomic_write_text(path, "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in rows.values()))
    else:
        path.unlink(missing_ok=True)
