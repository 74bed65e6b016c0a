"""The Ray engine: a step's items in shards, mapped by a pool of Ray actors, written as shards.

``--engine ray`` on ``predict`` and ``label`` runs the same per-item work as the local
engine, on Ray actors (``clinsynth.jobs.ray_predict`` and ``clinsynth.programs.steps.ray_label``
hold the two jobs):

1. the driver reads the input and cuts it into fixed-size shards in input order (shard
   ``k`` holds items ``k*N .. k*N+N-1``), so a rerun of the same command maps the same
   items to the same shard;
2. the shards still to do go to a pool of actors (Ray's ``ActorPool``), each of which loads its
   model (or opens its LM) once and then takes one shard after another;
3. each finished shard comes back to the driver, which writes it to
   ``<out>.shards/part-NNNNN.jsonl`` at once, atomically (temporary file + rename);
4. when every shard is done, the driver merges them in input order into ``<out>`` and
   removes the shard folder.

A killed run leaves finished shards behind; the rerun skips them and does the rest. The
folder's ``manifest.json`` keys it to the run (inputs, model, settings): shards of another
run are discarded, never merged. Workers send results back through Ray, so only the
driver writes files: outputs need no storage shared with the workers (inputs of the
work, such as a model folder, do).

Ray is imported only here and only when the engine is used (the ``scale`` extra).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.records import side_path
from clinsynth.errors import ClinsynthError
from clinsynth.fingerprint import parts_sha256
from clinsynth.progress import progress_bar

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
# Items per shard, per job: the unit of work a worker takes and of resume after a kill.
# predict: four of its 256-sentence scoring batches (clinsynth.model.predict.BATCH; a shard must
# hold whole batches so scores match the local engine's); label: LM calls take seconds each.
SHARD_SIZE = {"predict": 1024, "label": 64}
MANIFEST = "manifest.json"
_EXTRA_HINT = "--engine ray needs the 'scale' extra: pip install -e '.[scale]' (ray[data])"
# Environment for a cluster this run starts: no usage reporting (nothing leaves the machine).
_LOCAL_CLUSTER_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


@dataclass(frozen=True)
class RayEngine:
    """Where and how wide a ``--engine ray`` run goes; each default lives here."""

    address: str | None = None  # an existing cluster (ray://head:10001, auto); None: a local one for this run
    workers: int | None = None  # actors; None: one per CPU of the cluster, at most one per shard
    shard_size: int | None = None  # items per shard; None: the job's SHARD_SIZE
    show_progress: bool = True  # a progress bar over shards (and the workers' logs)

    def shard_size_for(self, job: str) -> int:
        size = self.shard_size or SHARD_SIZE[job]
        if size < 1:
            raise ClinsynthError(f"--shard-size must be at least 1, got {size}")
        return size


def require_ray() -> Any:
    """``ray``, imported on first use, or a clear error naming the extra."""
    try:
        import ray
    except ImportError as exc:
        raise ClinsynthError(_EXTRA_HINT) from exc
    return ray


@contextmanager
def ray_session(engine: RayEngine) -> Iterator[Any]:
    """Connected to ``engine.address``, or to a local cluster started (and stopped) for the run.

    A session the caller already opened (``ray.init`` in a notebook or a test) is used
    as it is and left running.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"log_to_driver": engine.show_progress, "configure_logging": False}
    if engine.address is None:
        for key, value in _LOCAL_CLUSTER_ENV.items():
            os.environ.setdefault(key, value)
        options["include_dashboard"] = False
    if engine.address is not None:
        check_reachable(engine.address)
    # No address means a cluster of the run's own: "local", not Ray's default, which first tries the
    # cluster named in /tmp/ray/ray_current_cluster. Any `ray start --head` leaves that file behind
    # once its head is gone (killed, rebooted), and the run then waits on a dead address and fails.
    address = engine.address or "local"
    try:
        ray.init(address=address, **options)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError...: all mean no cluster
        where = engine.address or "a local cluster"
        hint = _AUTH_HINT if _refused_for_token(exc) else ""
        raise ClinsynthError(f"could not start or reach Ray ({where}): {_last_line(exc)}{hint}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


# Seconds to open a TCP connection to a named cluster before the run stops. Ray itself retries
# an unreachable GCS for minutes, printing only its own warnings.
CONNECT_TIMEOUT = 10.0


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Stop at once, naming ``address``, when nothing listens there (``auto`` and ``local`` are Ray's to find)."""
    import socket

    if address in ("auto", "local"):
        return
    where = address.split("://", 1)[-1].split("/", 1)[0]
    host, colon, port = where.rpartition(":")
    if not colon or not port.isdigit():
        raise ClinsynthError(f"--ray-address {address!r}: expected host:port, ray://host:port, auto or local")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ClinsynthError(
            f"could not reach Ray at {address} ({reason} within {timeout:.0f} s): is the cluster's head running there?"
        ) from exc


# Ray (2.60, the scale extra's pin) turns token auth on for a cluster whose head finds a token; a driver
# given an explicit address then has to ask for it itself, before it imports ray: `auto` is the only
# address for which Ray does this on its own.
_AUTH_HINT = (
    "; the cluster asks for a token: set RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN where"
    " the token is not in ~/.ray/auth_token) before running clinsynth, or use --ray-address auto on the head"
)


def _refused_for_token(exc: BaseException) -> bool:
    """Whether Ray's connection error, or anything in its chain, is the cluster refusing a missing token."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def shards_of(items: Sequence[Any], size: int) -> list[list[Any]]:
    """Items cut into consecutive shards of ``size`` in input order (the last may be shorter)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def run_key(parts: Any) -> str:
    """A digest of what a run's shards depend on (JSON-serialisable ``parts``)."""
    return parts_sha256(parts)


class ShardStore:
    """``<out>.shards/``: one file per finished shard, plus the manifest naming their run.

    A shard's main file is written last (after its side files), so its existence means
    the shard is complete.
    """

    def __init__(self, out: Path, key: str) -> None:
        self.dir = side_path(Path(out), "shards")
        self.key = key

    def open(self) -> ShardStore:
        """Keep finished shards of this same run; discard any of another run."""
        manifest = self.dir / MANIFEST
        if self.dir.exists():
            try:
                same = json.loads(manifest.read_text(encoding="utf-8")).get("key") == self.key
            except (OSError, ValueError):
                same = False
            if not same:
                log.warning("%s holds shards of another run (other input, model or settings): discarded", self.dir)
                shutil.rmtree(self.dir)
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            atomic_write_text(manifest, json.dumps({"key": self.key}) + "\n")
        return self

    def path(self, shard: int, suffix: str = "jsonl") -> Path:
        return self.dir / f"part-{shard:05d}.{suffix}"

    def done(self, shard: int) -> bool:
        return self.path(shard).exists()

    def write(self, shard: int, lines: Sequence[str], side: dict[str, Sequence[str]] | None = None) -> None:
        """A finished shard: side files (``{suffix: lines}``) first, then its main file, each atomically."""
        for suffix, side_lines in (side or {}).items():
            atomic_write_text(self.path(shard, suffix), "".join(f"{line}\n" for line in side_lines))
        atomic_write_text(self.path(shard), "".join(f"{line}\n" for line in lines))

    def read(self, shard: int, suffix: str = "jsonl") -> list[str]:
        path = self.path(shard, suffix)
        if not path.exists():
            return []
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def map_shards(
    engine: RayEngine,
    payloads: Sequence[dict[str, Any]],
    worker: type,
    worker_kwargs: Callable[[int], dict[str, Any]],
) -> Iterator[Iterator[dict[str, Any]]]:
    """Each payload (one shard: ``shard`` index + JSON-safe fields) through ``worker``, on Ray actors.

    ``worker`` is a callable class: built once per actor with ``worker_kwargs(pool size)``
    (the model is loaded there; the size lets a job split a budget among its workers), then
    called on one payload at a time, returning that shard's result row (a shard is written
    whole or not at all). The context gives the rows as their shards finish (in any order),
    so the caller can write each at once; a caller may stop reading early (a worker stopped
    the run), and leaving the context stops the rest.

    The pool is Ray core's ``ActorPool``, driven from the caller's thread, so nothing of the run
    touches Ray once the context is left. With Ray Data's streaming iterator, used before, a run
    left early (a dead endpoint) was once ended by Ray from a driver thread other than the
    caller's, after ``ray.shutdown`` (exit 1, "The core worker has already been shutdown"),
    before it could say why it stopped; that iterator runs its pipeline in background threads
    that closing it signals but does not join.
    """
    if not payloads:
        yield iter(())
        return
    with ray_session(engine) as ray:
        from ray.util import ActorPool

        cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
        size = max(1, min(engine.workers or cpus, len(payloads)))
        # No restarts: a worker that dies fails the run with its error instead of redoing shards.
        actor = ray.remote(num_cpus=1, max_restarts=0)(worker)
        actors = [actor.remote(**worker_kwargs(size)) for _ in range(size)]
        pool = ActorPool(actors)
        rows = pool.map_unordered(lambda a, payload: a.__call__.remote(payload), payloads)
        bar = progress_bar(len(payloads), "shards", disable=not engine.show_progress)
        try:
            yield _worker_failures_named(rows, bar)
        finally:
            bar.close()
            for handle in actors:  # stops shards still running when the caller left early
                ray.kill(handle)


def _worker_failures_named(rows: Iterator[dict[str, Any]], bar: Any) -> Iterator[dict[str, Any]]:
    try:
        for row in rows:
            bar.update(1)
            yield row
    except ClinsynthError:
        raise
    except Exception as exc:  # noqa: BLE001 - a worker crashed (RayTaskError...): one clear message
        raise ClinsynthError(f"a Ray worker failed: {_last_line(exc)}") from exc

