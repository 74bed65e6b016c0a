"""``label`` on the Ray engine (``clinsynth.jobs.engine_ray``): its worker and driver.

Each worker runs the same DSPy program through the same resumable map as the local
engine (retries, fresh rollouts, failure kinds, the stop after an auth error or a few
transport failures in a row) on an LM opened through ``clinsynth.llm.session.open_lm``.
The privacy gate runs on the driver before any worker starts (``programs.steps.label``),
and again in each worker as it opens its LM.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from clinsynth.errors import BudgetExceeded, ClinsynthError
from clinsynth.jobs.engine_ray import RayEngine, ShardStore, map_shards, run_key, shards_of


class LabelShards:
    """A Ray actor: one LM session (through the privacy gate), then shards labelled by the resumable map."""

    def __init__(self, job: dict[str, Any]) -> None:
        from clinsynth.programs.steps.silver import ROLE

        from clinsynth.llm.session import open_lm

        self.job = job
        self.name = uuid.uuid4().hex  # usage is reported per worker: its meter counts all its shards
        settings = job["settings"]
        self.handle = open_lm(
            job["spec"], ROLE, job["policy"], [job["content"]], {job["program_label"]: job["program"]},
            env_folders=job["env_folders"], timeout=settings.timeout, limits=settings.limits,
        )  # fmt: skip

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._shard(payload["shard"], payload["items"])

    def _shard(self, shard: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        from clinsynth.programs.steps.silver import make_record

        from clinsynth.data.records import InputItem
        from clinsynth.jobs.resumable import failures_path_for, resumable_map, write_failures

        job, handle = self.job, self.handle
        items = [InputItem(**e["item"]) for e in entries]
        attributes = {e["item"]["id"]: e["attributes"] for e in entries}
        error, kind = "", ""
        with tempfile.TemporaryDirectory(prefix="clinsynth-shard-") as tmp:
            part, failures = Path(tmp) / "part.jsonl", Path(tmp) / "part.failures.jsonl"
            # Earlier runs' failures of these items: the map starts past the rollouts they spent.
            write_failures(failures, {e["item"]["id"]: e["failure"] for e in entries if e.get("failure")})
            try:
                resumable_map(
                    lambda item: job["program"](sentence=item.text),
                    items,
                    key=lambda item: item.id,
                    to_row=lambda item, attempt: make_record(
                        item, attempt, handle, job["program"], job["digest"], job["seed"],
                        attributes.get(item.id, {}),
                    ),  # fmt: skip
                    out=part,
                    handle=handle,
                    settings=job["settings"],
                    failure_info=lambda item: {"text": item.text},
                    failures=failures,
                )
            except ClinsynthError as exc:  # the endpoint or the budget stopped this worker: the run stops
                # Its message names the run's files, not this worker's temporary ones.
                error = str(exc).replace(str(failures), str(failures_path_for(Path(job["out"]))))
                error, kind = error.replace(str(part), job["out"]), type(exc).__name__
            records = part.read_text(encoding="utf-8").splitlines() if part.exists() else []
            failed = failures.read_text(encoding="utf-8").splitlines() if failures.exists() else []
        return {
            "shard": shard,
            "records": [line for line in records if line.strip()],
            "failures": failed,
            "worker": self.name,
            "usage": handle.usage(),  # all this worker's calls so far (shards may overlap in time)
            "lm": handle.name,
            "error": error,
            "kind": kind,
        }


def _add_usage(total: dict[str, Any] | None, part: dict[str, Any] | None) -> dict[str, Any] | None:
    if part is None:
        return total
    if total is None:
        return dict(part)
    out = dict(total)
    for name in ("calls", "prompt_tokens", "completion_tokens"):
        out[name] = total[name] + part[name]
    both = total["cost_usd"] is not None and part["cost_usd"] is not None
    out["cost_usd"] = round(total["cost_usd"] + part["cost_usd"], 6) if both else None
    out["stopped_by_budget"] = total["stopped_by_budget"] or part["stopped_by_budget"]
    return out


def _split_limits(limits: Any, workers: int) -> Any:
    """Each worker meters its own LM, so each gets an equal share of --max-cost, --rpm and --tpm."""
    share = {k: None if v is None else v / workers for k, v in asdict(limits).items()}
    return replace(limits, **share)


_STOPS = {"BudgetExceeded": BudgetExceeded}


def label_with_ray(task: Any, job: Any, config: Any, out: Path, result: Any) -> None:
    """``label.label_sentences`` on Ray workers; fills ``result`` as the local engine does.

    ``job`` (``label._Job``) has passed the privacy gate. Shards cover all the job's
    items in input order; a worker gets the items of its shard not yet in ``out``.
    Finished shards are merged into ``out`` through the same resumable writer (and lock),
    failures into ``<out>.failures.jsonl`` in the local engine's format, also when a worker
    stops the run (auth, endpoint down, budget): then the error is raised after the merge.
    """
    from clinsynth.data.records import ResumableWriter
    from clinsynth.fingerprint import program_sha256
    from clinsynth.jobs.resumable import EndpointError, failures_path_for, read_failures, write_failures
    from clinsynth.llm.lm import LOCAL_MODEL
    from clinsynth.llm.meter import log_run

    engine: RayEngine = config.ray
    if job.spec.model == LOCAL_MODEL:
        raise ClinsynthError(
            "--engine ray labels through an endpoint its workers share: give --lm MODEL --api-base URL "
            "(a vLLM server, say); the embedded LLM would start one server per worker"
        )
    size = engine.shard_size_for("label")
    digest = program_sha256(job.program, task.taxonomy.guideline_text)
    shards = shards_of(job.items, size)
    key = run_key(
        {"job": "label", "lm": job.spec, "program": digest, "samples": config.samples, "seed": config.seed,
         "size": size, "items": [(i.id, i.text) for i in job.items]}
    )  # fmt: skip
    failures_path = failures_path_for(out)
    stop: ClinsynthError | None = None
    with ResumableWriter(out) as writer:  # the run's lock, the ids already done, and the merge target
        before = set(writer.done)
        earlier = {k: v for k, v in read_failures(failures_path).items() if k not in before}
        store = ShardStore(out, key).open()
        payloads = []
        for k, shard in enumerate(shards):
            todo = [i for i in shard if i.id not in before]
            if todo and not store.done(k):
                entries = [
                    {"item": asdict(i), "attributes": job.attributes.get(i.id, {}), "failure": earlier.get(i.id)}
                    for i in todo
                ]
                payloads.append({"shard": k, "items": entries})
        result.skipped = sum(1 for i in job.items if i.id in before)

        def worker_kwargs(workers: int) -> dict[str, Any]:
            settings = replace(config.map, show_progress=False, limits=_split_limits(config.map.limits, workers))
            return {"job": {
                "spec": job.spec, "program": job.program, "program_label": job.program_label, "content": job.content,
                "policy": task.privacy, "env_folders": [task.root], "settings": settings, "seed": config.seed,
                "digest": digest, "out": str(out),
            }}  # fmt: skip

        partial: list[tuple[list[str], list[str]]] = []  # what a stopped worker had done
        usage: dict[str, dict[str, Any]] = {}  # the latest of each worker's running totals
        with map_shards(engine, payloads, LabelShards, worker_kwargs) as rows:
            for row in rows:
                records, failed = row["records"], row["failures"]
                latest = row["usage"]
                worker = row["worker"]
                if latest is not None and latest["calls"] >= usage.get(worker, latest)["calls"]:
                    usage[worker] = latest
                result.lm = row["lm"]
                if row["error"]:
                    partial.append((records, failed))
                    kind = row["kind"]
                    stop = (_STOPS.get(kind) or EndpointError)(f"a Ray worker stopped the run: {row['error']}")
                    break  # leaving the context closes the stream: the other workers stop
                store.write(row["shard"], records, side={"failures.jsonl": failed})

        # Merge, in input order; the writer skips ids already in out (a merge a kill interrupted).
        failures = dict(earlier)
        merged = [(store.read(k), store.read(k, "failures.jsonl")) for k in range(len(shards))] + partial
        for records, failed in merged:
            for line in records:
                record = json.loads(line)
                if record["id"] not in writer.done:
                    writer.write(record)
                    result.labelled += 1
                    result.label_counts.update(record["labels"] or ["NONE"])
                failures.pop(record["id"], None)
            for line in failed:
                row = json.loads(line)
                failures[row["id"]] = row
        write_failures(failures_path, failures)
        store.remove()
    result.failed = sum(1 for i in job.items if i.id in failures)
    result.failures_path = failures_path if result.failed else None
    result.usage = None
    for part in usage.values():
        result.usage = _add_usage(result.usage, part)
    if result.usage and result.usage["calls"]:
        log_run(out, {"lm": result.lm, "program": job.program_label, "usage": result.usage, "engine": "ray"})
    if stop is not None:
        raise stop
