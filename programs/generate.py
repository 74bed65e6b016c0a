"""``python -m programs.generate``: write bronze sentences per category with LabelToData, then filter them.

For each target (every category, NONE hard negatives, multi-label pairs) the generator
plans calls of ``--per-call`` sentences with sampled style constraints, until the target
has its quota of *kept* sentences or ``--max-rounds`` is reached. Candidates pass, in
order: a PHI scan, exact and near-duplicate removal (MiniLM cosine), a leakage audit
against every gold sentence (cosine >= 0.95 or a shared 8-gram), and a round trip through
the data-to-label program (``--round-trip drop|relabel|keep|off``).

Files next to ``--out`` make the run resumable call by call and sentence by sentence:
``<out>.calls.jsonl`` (each generation call and its sentences), ``<out>.roundtrip.jsonl``
(round-trip labels), ``<out>.failures.jsonl`` (calls that failed after retries, retried on
the next run). ``<out>`` (kept records), ``<out>.dropped.jsonl`` (each dropped sentence
and why) and ``<out>.report.json`` (counts per target and filter) are rewritten at the
end of every run from those files.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import clinsynth  # noqa: F401  (offline environment before dspy)
from clinsynth import bronze_filters as bf
from clinsynth.compiled import compiled_path, load_compiled
from clinsynth.config import load_config
from clinsynth.errors import ClinsynthError
from clinsynth.fingerprint import program_sha256
from clinsynth.gold import SPLITS, split_path
from clinsynth.lm import LMHandle, endpoint_for, lm_name_for, make_lm
from clinsynth.privacy import Sensitivity, check_send
from clinsynth.progress import progress
from clinsynth.records import (
    Provenance,
    Record,
    ResumableWriter,
    iter_jsonl,
    now_iso,
    read_records,
    side_path,
    text_id,
    write_records,
)
from clinsynth.runner import map_with_retries
from clinsynth.taxonomy import DEFAULT_TAXONOMY, NONE_LABEL, Taxonomy, load_taxonomy
from programs.data_to_label import DataToLabel
from programs.label import default_program_path as default_labeler_path
from programs.label_to_data import (
    MULTI_TARGET,
    NONE_TARGET,
    GenerationRequest,
    LabelToData,
    call_rollout,
    plan_call,
)

PROGRAM_NAME = "programs.label_to_data.LabelToData"
ROUND_TRIP_POLICIES = ("drop", "relabel", "keep", "off")
GENERATION_TEMPERATURE = 0.9  # diversity; the round trip and filters catch what drifts
log = logging.getLogger("programs.generate")


@dataclass
class GenerateConfig:
    per_category: int = 50
    negatives: int = 50
    multi_label: int = 20
    per_call: int = 5
    overgenerate: float = 2.0
    max_rounds: int = 3
    round_trip: str = "drop"
    near_duplicate: float = 0.9
    leak_cosine: float = 0.95
    leak_ngram: int = 8
    seed: int = 0
    attempts: int = 3
    threads: int = 1
    categories: tuple[str, ...] | None = None


@dataclass
class GenerateResult:
    kept: list[Record]
    dropped: list[bf.Dropped]
    counts: dict[str, Counter]
    leakage_pairs: list[dict[str, Any]]
    failed_calls: int
    rounds: int
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def kept_per_target(self) -> Counter:
        return Counter({t: c["kept"] for t, c in self.counts.items()})


def quotas(taxonomy: Taxonomy, cfg: GenerateConfig) -> dict[str, int]:
    names = cfg.categories or taxonomy.names
    unknown = [n for n in names if n not in taxonomy.names]
    if unknown:
        raise ClinsynthError(f"unknown categories {unknown}; the taxonomy has {', '.join(taxonomy.names)}")
    out = {n: cfg.per_category for n in names}
    if cfg.negatives:
        out[NONE_TARGET] = cfg.negatives
    if cfg.multi_label:
        out[MULTI_TARGET] = cfg.multi_label
    return out


def gold_texts(paths: list[Path] | None = None) -> list[str]:
    """Every gold sentence (all splits): the leakage audit's reference."""
    paths = paths if paths is not None else [split_path(s) for s in SPLITS]
    return [r.text for p in paths if p.exists() for r in read_records(p)]


class BronzeGenerator:
    """Runs generation rounds and the filters over everything generated so far."""

    def __init__(
        self,
        taxonomy: Taxonomy,
        generator: LabelToData,
        labeler: DataToLabel | None,
        handle: LMHandle,
        out: Path,
        cfg: GenerateConfig,
        gold: list[str],
        embed: bf.Embed,
        show_progress: bool = True,
    ) -> None:
        self.taxonomy = taxonomy
        self.generator = generator
        self.labeler = labeler
        self.handle = handle
        self.out = out
        self.cfg = cfg
        self.gold = gold
        self.embed = embed
        self.show_progress = show_progress
        self.generator_sha = program_sha256(generator, taxonomy.guideline_text)
        self.labeler_sha = program_sha256(labeler, taxonomy.guideline_text) if labeler is not None else None
        self.gen_lm = handle.lm.copy(temperature=GENERATION_TEMPERATURE)
        self.failures_path = side_path(out, "failures.jsonl")
        self.spent: dict[str, int] = {}  # call id -> attempts earlier runs spent on it

    # -- generation
    def _generate(self, requests: list[GenerationRequest]) -> int:
        """Run the calls not yet in the calls file; returns how many failed."""
        calls_path = side_path(self.out, "calls.jsonl")
        failed = 0
        with ResumableWriter(calls_path) as writer, self.failures_path.open("a", encoding="utf-8") as failures:
            todo = [r for r in requests if r.call_id not in writer.done]
            handle = _Handle(self.gen_lm, self.handle)
            stream = map_with_retries(
                self.generator.run_request,
                todo,
                handle,
                self.cfg.attempts,
                self.cfg.threads,
                rollout_base=lambda r: call_rollout(r.call_id) + self.spent.get(r.call_id, 0),
            )
            for request, result in progress(stream, desc="generating", disable=not self.show_progress, total=len(todo)):
                if not result.ok:
                    failed += 1
                    spent = result.attempts + self.spent.get(request.call_id, 0)  # over all runs
                    self.spent[request.call_id] = spent
                    failure = {"call_id": request.call_id, "error": result.error, "attempts": spent, "at": now_iso()}
                    failures.write(json.dumps(failure) + "\n")
                    failures.flush()
                    continue
                writer.write(
                    {
                        "id": request.call_id,
                        **request.to_dict(),
                        "sentences": list(result.value.sentences),
                        "attempts": result.attempts,
                        "lm": self.handle.name,
                        "program_sha256": self.generator_sha,
                        "seed": self.cfg.seed,
                        "created_at": now_iso(),
                    }
                )
        return failed

    def _calls(self) -> dict[str, dict[str, Any]]:
        path = side_path(self.out, "calls.jsonl")
        if not path.exists():
            return {}
        return {obj["id"]: obj for _, obj in iter_jsonl(path)}

    # -- round trip
    def _round_trip(self, candidates: list[bf.Candidate]) -> dict[str, dict[str, Any]]:
        path = side_path(self.out, "roundtrip.jsonl")
        assert self.labeler is not None
        with ResumableWriter(path) as writer:
            todo = [c for c in candidates if c.id not in writer.done]
            stream = map_with_retries(
                lambda c: self.labeler(sentence=c.text), todo, self.handle, self.cfg.attempts, self.cfg.threads
            )
            for cand, result in progress(stream, desc="round trip", disable=not self.show_progress, total=len(todo)):
                if result.ok:
                    conf = result.value.confidence
                    writer.write(
                        {
                            "id": cand.id,
                            "labels": list(result.value.categories),
                            "confidence": None if conf is None else round(float(conf), 4),
                        }
                    )
        return {obj["id"]: obj for _, obj in iter_jsonl(path)} if path.exists() else {}

    # -- filters
    def filter(self, calls: dict[str, dict[str, Any]], order: list[str]) -> GenerateResult:
        cfg = self.cfg
        candidates = []
        for call_id in order:
            call = calls.get(call_id)
            if call is None:
                continue
            for text in call["sentences"]:
                candidates.append(
                    bf.Candidate(
                        id=f"bronze-{text_id(text)[2:]}",
                        text=text,
                        target=call["target"],
                        labels=tuple(call["labels"]),
                        call_id=call_id,
                    )
                )
        counts: dict[str, Counter] = defaultdict(Counter)
        for c in candidates:
            counts[c.target]["generated"] += 1
        dropped: list[bf.Dropped] = []

        def apply(result: tuple[list[bf.Candidate], list[bf.Dropped]]) -> list[bf.Candidate]:
            kept, gone = result
            for d in gone:
                counts[d.candidate.target][d.filter] += 1
            dropped.extend(gone)
            return kept

        survivors = apply(bf.phi_filter(candidates))
        survivors = apply(bf.exact_dedup(survivors))
        audit = bf.audit_leakage(survivors, self.gold, self.embed, cfg.leak_cosine, cfg.leak_ngram)
        survivors = apply(bf.leakage_filter(survivors, audit))
        survivors = apply(bf.near_dedup(survivors, self.embed, cfg.near_duplicate))
        if cfg.round_trip != "off" and self.labeler is not None:
            answers = self._round_trip(survivors)
            kept_rt, gone = [], []
            for c in survivors:
                answer = answers.get(c.id)
                if answer is None:
                    gone.append(bf.Dropped(c, bf.ROUND_TRIP_FAILED, "the labeller failed after retries"))
                    continue
                agrees = bf.round_trip_agrees(c.labels, answer["labels"])
                c.info.update(
                    roundtrip_labels=answer["labels"],
                    roundtrip_confidence=answer["confidence"],
                    roundtrip_agrees=agrees,
                )
                if cfg.round_trip == "drop" and not agrees:
                    shown = ", ".join(answer["labels"]) or NONE_LABEL
                    gone.append(bf.Dropped(c, bf.ROUND_TRIP, f"labeller said {shown}"))
                    continue
                if cfg.round_trip == "relabel" and not agrees:
                    c.info["generated_labels"] = list(c.labels)
                    c.labels = tuple(answer["labels"])
                    counts[c.target]["relabelled"] += 1
                kept_rt.append(c)
            survivors = apply((kept_rt, gone))
        kept_records, over = self._within_quota(survivors, calls)
        apply(([], over))
        for r in kept_records:
            counts[r.provenance.attributes["target"]]["kept"] += 1
        pairs = sorted(
            (
                {"bronze": c.text, "gold": audit.nearest[c.id][1], "cosine": round(audit.nearest[c.id][0], 4)}
                for c in candidates
                if c.id in audit.nearest
            ),
            key=lambda p: -p["cosine"],
        )[:10]
        return GenerateResult(kept_records, dropped, counts, pairs, failed_calls=0, rounds=0)

    def _within_quota(
        self, survivors: list[bf.Candidate], calls: dict[str, dict[str, Any]]
    ) -> tuple[list[Record], list[bf.Dropped]]:
        want = quotas(self.taxonomy, self.cfg)
        taken: Counter = Counter()
        records, over = [], []
        for c in survivors:
            if taken[c.target] >= want.get(c.target, 0):
                over.append(bf.Dropped(c, bf.OVER_QUOTA, "target already has its quota"))
                continue
            taken[c.target] += 1
            records.append(self._record(c, calls[c.call_id]))
        return records, over

    def _record(self, c: bf.Candidate, call: dict[str, Any]) -> Record:
        attributes = {
            "target": c.target,
            "call_id": c.call_id,
            "generated_labels": c.info.get("generated_labels", list(c.labels)),
            **call["attributes"],
            "generation_attempts": call.get("attempts"),
            **{k: v for k, v in c.info.items() if k != "generated_labels"},
        }
        if self.labeler_sha and "roundtrip_labels" in c.info:
            attributes["roundtrip_program_sha256"] = self.labeler_sha
        return Record(
            id=c.id,
            text=c.text,
            labels=list(c.labels),
            source="bronze",
            provenance=Provenance(
                lm=call["lm"],
                program=PROGRAM_NAME,
                program_sha256=call["program_sha256"],
                seed=call["seed"],
                created_at=call["created_at"],
                confidence=c.info.get("roundtrip_confidence"),
                attributes=attributes,
            ),
        )

    # -- the whole run
    def run(self) -> GenerateResult:
        started = time.monotonic()
        # Attempts earlier runs spent on failed calls: retries start past their cached rollouts.
        self.spent = {}
        if self.failures_path.exists():
            self.spent = {o["call_id"]: int(o.get("attempts") or 0) for _, o in iter_jsonl(self.failures_path)}
        self.failures_path.write_text("")  # this run's failures only; failed calls are retried
        want = quotas(self.taxonomy, self.cfg)
        planned: dict[str, int] = dict.fromkeys(want, 0)
        order: list[str] = []
        failed = 0
        result: GenerateResult | None = None
        for round_no in range(1, self.cfg.max_rounds + 1):
            have = Counter() if result is None else result.kept_per_target()
            requests = []
            for target, quota in want.items():
                missing = quota - have[target]
                if missing <= 0:
                    continue
                n_calls = math.ceil(missing * self.cfg.overgenerate / self.cfg.per_call)
                for index in range(planned[target], planned[target] + n_calls):
                    request = plan_call(self.taxonomy, target, index, self.cfg.seed)
                    requests.append(request)
                    order.append(request.call_id)
                planned[target] += n_calls
            if not requests:
                break
            # Interleave targets so an interrupted run has a bit of every target.
            requests.sort(key=lambda r: int(r.call_id.rsplit(":", 1)[1]))
            failed += self._generate(requests)
            result = self.filter(self._calls(), order)
            result.rounds = round_no
        assert result is not None
        result.failed_calls = failed
        if not failed:
            self.failures_path.unlink(missing_ok=True)
        result.seconds = time.monotonic() - started
        return result


class _Handle:
    """An LM handle with another LM (the generator's temperature) and the same adapter."""

    def __init__(self, lm: Any, base: LMHandle) -> None:
        self.lm = lm
        self._base = base

    def context(self) -> Any:
        import dspy

        return dspy.context(lm=self.lm, adapter=self._base.adapter)


def write_outputs(result: GenerateResult, out: Path, cfg: GenerateConfig, lm_name: str, taxonomy: Taxonomy) -> None:
    write_records(out, result.kept)
    dropped_path = side_path(out, "dropped.jsonl")
    tmp = dropped_path.with_name(dropped_path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for d in result.dropped:
            row = {
                "id": d.candidate.id,
                "text": d.candidate.text,
                "target": d.candidate.target,
                "labels": list(d.candidate.labels),  # what the sentence was written for
                "filter": d.filter,
                "detail": d.detail,
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(dropped_path)
    report = {
        "out": str(out),
        "lm": lm_name,
        "created_at": now_iso(),
        "config": {k: v for k, v in vars(cfg).items()},
        "rounds": result.rounds,
        "failed_calls": result.failed_calls,
        "seconds": round(result.seconds, 1),
        "filters": list(bf.FILTERS) + [bf.OVER_QUOTA],
        "counts": {t: dict(c) for t, c in result.counts.items()},
        "kept_by_label": dict(Counter(label for r in result.kept for label in (r.labels or [NONE_LABEL]))),
        "nearest_gold_pairs": result.leakage_pairs,
        "taxonomy": taxonomy.name,
    }
    side_path(out, "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def count_rows(result: GenerateResult) -> list[list[Any]]:
    columns = ["generated", *bf.FILTERS, "relabelled", bf.OVER_QUOTA, "kept"]
    rows = []
    for target in sorted(result.counts, key=lambda t: (t in (NONE_TARGET, MULTI_TARGET), t)):
        rows.append([target, *(result.counts[target].get(c, 0) for c in columns)])
    return [["target", *columns], *rows]


def default_generator_path(lm_name: str) -> Path | None:
    path = compiled_path("label_to_data", lm_name)
    return path if path.exists() else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m programs.generate", description=__doc__.splitlines()[0])
    p.add_argument("--lm", default="local", help="'local' (embedded) or a litellm model string")
    p.add_argument("--api-base", default=None)
    p.add_argument("--out", type=Path, required=True, help="kept bronze records (JSONL); side files next to it")
    p.add_argument("--per-category", type=int, default=50, help="kept sentences wanted per category")
    p.add_argument("--negatives", type=int, default=None, help="kept NONE hard negatives (default: --per-category)")
    p.add_argument("--multi-label", type=int, default=None, help="kept two-category sentences (default: 1/5 of it)")
    p.add_argument("--categories", default=None, help="comma-separated subset of categories")
    p.add_argument("--per-call", type=int, default=5, help="sentences asked per LM call")
    p.add_argument("--overgenerate", type=float, default=2.0, help="candidates planned per missing sentence")
    p.add_argument("--max-rounds", type=int, default=3, help="top-up rounds for targets short of their quota")
    p.add_argument("--round-trip", choices=ROUND_TRIP_POLICIES, default="drop")
    p.add_argument("--near-duplicate", type=float, default=0.9, help="cosine at or above which a sentence is dropped")
    p.add_argument(
        "--program", type=Path, default=None, help="compiled LabelToData (default: compiled/label_to_data.<lm>.json)"
    )
    p.add_argument("--labeler", type=Path, default=None, help="compiled DataToLabel for the round trip")
    p.add_argument("--zero-shot", action="store_true", help="ignore compiled programs")
    p.add_argument("--taxonomy", type=Path, default=DEFAULT_TAXONOMY)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--attempts", type=int, default=3)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = GenerateConfig(
        per_category=args.per_category,
        negatives=args.per_category if args.negatives is None else args.negatives,
        multi_label=max(1, args.per_category // 5) if args.multi_label is None else args.multi_label,
        per_call=args.per_call,
        overgenerate=args.overgenerate,
        max_rounds=args.max_rounds,
        round_trip=args.round_trip,
        near_duplicate=args.near_duplicate,
        seed=args.seed,
        attempts=args.attempts,
        threads=args.threads,
        categories=tuple(c.strip() for c in args.categories.split(",")) if args.categories else None,
    )
    try:
        taxonomy = load_taxonomy(args.taxonomy)
        quotas(taxonomy, cfg)  # validates --categories before anything starts
        # Only the guideline and generated sentences go to the LM; gold stays local (embeddings).
        check_send(
            "the guideline and generated sentences",
            Sensitivity.SYNTHETIC,
            endpoint_for(args.lm, args.api_base),
            load_config(),
        )
        lm_name = lm_name_for(args.lm)
        generator = LabelToData(taxonomy, n=cfg.per_call)
        generator_path = None if args.zero_shot else args.program or default_generator_path(lm_name)
        if generator_path is not None:
            load_compiled(generator, generator_path, taxonomy)
        labeler = None
        if cfg.round_trip != "off":
            labeler = DataToLabel(taxonomy)
            labeler_path = None if args.zero_shot else args.labeler or default_labeler_path(lm_name)
            if labeler_path is not None:
                load_compiled(labeler, labeler_path, taxonomy)
        from clinsynth.embeddings import encode

        handle = make_lm(args.lm, api_base=args.api_base)
        print(f"generator: {generator_path or 'zero-shot'}; lm: {handle.name}", file=sys.stderr)
        runner = BronzeGenerator(
            taxonomy, generator, labeler, handle, args.out, cfg, gold_texts(), encode, not args.no_progress
        )
        result = runner.run()
        write_outputs(result, args.out, cfg, handle.name, taxonomy)
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from clinsynth.report import format_table

    table = count_rows(result)
    print(format_table(table[0], table[1:]))
    report = side_path(args.out, "report.json")
    print(f"{args.out}: {len(result.kept)} kept; failed calls {result.failed_calls}; report {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
