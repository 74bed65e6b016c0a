"""Compiled programs on disk: where they live, and the metadata saved with them.

A compiled program is DSPy's state-only JSON (instructions, demos) with a ``metadata``
block: DSPy's dependency versions plus how it was made (LM, endpoint, optimizer, seed,
data, scores before and after, where its demos came from) and the sha256 of the taxonomy
it was compiled for, so a program made for another guideline is not used silently.

Files are keyed by model *and* endpoint: ``<program>.<lm>.json`` for the embedded model
and for a provider's default endpoint, ``<program>.<lm>@<host>_<port>.json`` when a
non-default ``api_base`` is set. A program tuned against a local server is then never
picked up for a remote endpoint serving a model of the same name (its demos and scores
belong to the other one).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from clinsynth.data.fileio import atomic_path
from clinsynth.data.privacy import Endpoint, Sensitivity
from clinsynth.data.taxonomy import Taxonomy
from clinsynth.errors import ClinsynthError, DataError
from clinsynth.llm.lm import LOCAL_MODEL, lm_name_for
from clinsynth.llm.session import DemoSource, load_env_files, resolve_endpoint
from clinsynth.paths import COMPILED_DIR, PROJECT_ROOT

if TYPE_CHECKING:
    from clinsynth.data.task import LMSpec, Task

log = logging.getLogger(__name__)

LOCAL_API_BASE = "local"  # the embedded model's endpoint in metadata: its loopback port changes every start
LOCAL_LM_NAME = lm_name_for(LOCAL_MODEL)


def lm_slug(lm_name: str) -> str:
    """A file-name-safe short name for an LM: ``local`` for the embedded one."""
    if lm_name.startswith("local/"):
        return "local"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", lm_name).strip("_")


def endpoint_slug(api_base: str) -> str:
    """``<host>_<port>`` of a base URL, file-name safe (the port defaults to the scheme's)."""
    parsed = urlparse(api_base if "://" in api_base else f"http://{api_base}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = re.sub(r"[^A-Za-z0-9.-]+", "_", parsed.hostname or "unknown").strip("_")
    return f"{host}_{port}"


def _provider_default_base(lm_name: str) -> str | None:
    # The base URL litellm uses for the provider when none is set (a local server for ollama, ...).
    from clinsynth.llm.session import provider_default_base

    return provider_default_base(lm_name)


def _norm(api_base: str | None) -> str | None:
    return api_base.rstrip("/") if api_base else None


def distinct_api_base(lm_name: str, api_base: str | None) -> str | None:
    """``api_base`` if it tells the endpoint apart in a file name; None for the embedded model or a provider default."""
    if not api_base or api_base == LOCAL_API_BASE or lm_name.startswith("local/"):
        return None
    if _norm(api_base) == _norm(_provider_default_base(lm_name)):
        return None
    return api_base


def compiled_path(program: str, lm_name: str, directory: Path = COMPILED_DIR, api_base: str | None = None) -> Path:
    """``<directory>/<program>.<lm>[@<host>_<port>].json``, e.g. ``tasks/ad_signs/compiled/data_to_label.local.json``.

    The ``@<host>_<port>`` part is added only for a non-default ``api_base`` (see the module docstring).
    """
    name = f"{program}.{lm_slug(lm_name)}"
    if (base := distinct_api_base(lm_name, api_base)) is not None:
        name += f"@{endpoint_slug(base)}"
    return Path(directory) / f"{name}.json"


def endpoint_record(endpoint: Endpoint, lm_name: str) -> dict[str, str | None]:
    """What metadata records of an endpoint: model and base URL (``local`` for the embedded model)."""
    if lm_name == LOCAL_LM_NAME:
        return {"model": endpoint.model, "api_base": LOCAL_API_BASE}
    return {"model": endpoint.model, "api_base": endpoint.api_base}


def spec_endpoint_record(spec: LMSpec) -> dict[str, str | None]:
    """``endpoint_record`` of where ``spec``'s requests would go (resolved as the session resolves it)."""
    return endpoint_record(resolve_endpoint(spec), lm_name_for(spec.model))


def same_endpoint(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("model") == b.get("model") and _norm(a.get("api_base")) == _norm(b.get("api_base"))


def project_relative(path: Path | str | None) -> str | None:
    """``path`` relative to the project root when inside it (metadata must not carry a machine's layout)."""
    if path is None:
        return None
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(resolved)


def default_compiled(task: Task, program: str, spec: LMSpec) -> Path | None:
    """The task's compiled ``program`` (``data_to_label``, ``label_to_data``) for ``spec``, if there is one.

    None when there is no file, or when its metadata records another endpoint than the
    one ``spec`` resolves to. Files from before endpoints were recorded are used as
    before (their name already matched the model); their demos count as private.
    """
    load_env_files(task.root)  # the endpoint may come from the task's .env, as in open_lm
    expected = spec_endpoint_record(spec)
    lm_name = lm_name_for(spec.model)
    path = compiled_path(program, lm_name, task.compiled_dir, api_base=expected["api_base"])
    if not path.exists():
        return None
    recorded = (read_metadata(path).get("clinsynth") or {}).get("endpoint")
    if isinstance(recorded, dict) and not same_endpoint(recorded, expected):
        log.warning(
            "%s was compiled for %s at %s, not %s at %s: not using it",
            path,
            recorded.get("model"),
            recorded.get("api_base"),
            expected["model"],
            expected["api_base"],
        )
        return None
    return path


def compiled_variants(task: Task, program: str, spec: LMSpec) -> dict[str, Path]:
    """Other compiled ``program`` files for ``spec`` beside the default one, by variant name.

    A variant (``data_to_label.decisions.local.json``: another optimizer's result, say) is
    compared with the default by the eval suites but never used by a run unless named.
    Files recorded for another endpoint are left out, as ``default_compiled`` does.
    """
    expected = spec_endpoint_record(spec)
    default = compiled_path(program, lm_name_for(spec.model), task.compiled_dir, api_base=expected["api_base"])
    _, rest = default.name.split(".", 1)
    found = {}
    for path in sorted(default.parent.glob(f"{program}.*.{rest}")):
        variant = path.name[len(program) + 1 : -len(rest) - 1]
        if not variant or "." in variant:
            continue
        recorded = (read_metadata(path).get("clinsynth") or {}).get("endpoint")
        if isinstance(recorded, dict) and not same_endpoint(recorded, expected):
            continue
        found[variant] = path
    return found


def taxonomy_sha256(taxonomy: Taxonomy) -> str:
    return hashlib.sha256(taxonomy.guideline_text.encode("utf-8")).hexdigest()


def save_compiled(program: Any, path: Path, metadata: dict[str, Any]) -> None:
    """``program.save`` (state only), then add our metadata to DSPy's; the file is replaced atomically."""
    # DSPy picks the format by suffix, so the unique temporary name ends in .json.
    with atomic_path(path, suffix=".tmp.json") as tmp:
        program.save(str(tmp))
        state = json.loads(tmp.read_text(encoding="utf-8"))
        state.setdefault("metadata", {}).update(metadata)
        tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_metadata(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError) as exc:
        raise ClinsynthError(f"{path}: not a readable compiled program ({exc})") from exc


def demo_source_from(record: Any, path: Path) -> DemoSource:
    """The ``demos_from`` metadata entry as a DemoSource; a malformed one is an error, not a guess."""
    if not isinstance(record, dict) or not isinstance(record.get("data"), str):
        raise ClinsynthError(f"{path}: metadata 'demos_from' must be {{'data': ..., 'sensitivity': ...}}")
    try:
        sensitivity = Sensitivity(record.get("sensitivity"))
    except ValueError as exc:
        choices = ", ".join(s.value for s in Sensitivity)
        raise ClinsynthError(f"{path}: metadata 'demos_from' sensitivity must be one of {choices}") from exc
    return DemoSource(record["data"], sensitivity)


# What DSPy's Predict.dump_state writes. Predict.load_state sets *any* other key as an
# attribute, so a file could set ``config`` (LM call options: api_base, api_key, model...)
# or ``callbacks``; and a saved ``lm`` becomes the predictor's own LM.
_PREDICT_STATE_KEYS = frozenset({"traces", "train", "demos", "signature", "fields", "lm"})


def check_no_lm_settings(program: Any, state: Any, path: Path) -> None:
    """Refuse a program file that would choose an LM or endpoint (DataError naming the file and key).

    Every request must go through the one LM the session opened after its privacy check
    and whose meter counts cost: a predictor's saved ``lm`` or a ``config`` with an
    ``api_base`` would send prompts (private text and demos included) elsewhere, unmetered.
    """
    import dspy

    if not isinstance(state, dict):
        raise DataError("a compiled program must be a JSON object", path=path)
    for name, param in program.named_parameters():
        if not isinstance(param, dspy.Predict):
            continue
        entry = state.get(name)
        if not isinstance(entry, dict):
            continue  # DSPy's own load names a missing or malformed entry
        if entry.get("lm") is not None:
            raise DataError(
                "a compiled program may not carry an LM (model, endpoint, settings): the run's LM "
                "(--lm, --api-base, the task's [lm]) is the only one used; set it to null or recompile",
                path=path, field=f"{name}.lm",
            )  # fmt: skip
        extra = sorted(set(entry) - _PREDICT_STATE_KEYS)
        if extra:
            raise DataError(
                f"a compiled program may not set '{extra[0]}' on a predictor (it would choose LM settings such as "
                "the endpoint); remove it or recompile",
                path=path, field=f"{name}.{extra[0]}",
            )  # fmt: skip


def load_compiled(program: Any, path: Path, taxonomy: Taxonomy) -> Any:
    """Load state into ``program``; refuse a program compiled for a different taxonomy.

    Sets ``program.demos_from`` from the metadata when recorded; the privacy session
    treats demos without a record as private (``clinsynth.llm.session.program_demo_source``).
    A file that would choose LM settings (a saved ``lm``, a predictor ``config``) is
    refused (``check_no_lm_settings``).
    """
    path = Path(path)
    if not path.exists():
        raise ClinsynthError(f"{path}: compiled program not found")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClinsynthError(f"{path}: not a readable compiled program ({exc})") from exc
    check_no_lm_settings(program, state, path)
    meta = read_metadata(path)
    made_for = meta.get("taxonomy_sha256")
    if made_for and made_for != taxonomy_sha256(taxonomy):
        raise ClinsynthError(
            f"{path}: compiled for another version of the guideline (taxonomy sha256 {made_for[:12]}, "
            f"current {taxonomy_sha256(taxonomy)[:12]}); recompile with python -m programs.compile"
        )
    recorded = (meta.get("clinsynth") or {}).get("demos_from")
    demos_from = demo_source_from(recorded, path) if recorded is not None else None
    try:
        program.load(str(path))
    except (KeyError, ValueError, TypeError) as exc:
        raise ClinsynthError(f"{path}: does not match this program ({type(exc).__name__}: {exc})") from exc
    # Belt and braces: whatever DSPy's loader does with a file, no predictor keeps an LM of its own.
    for name, predictor in program.named_predictors():
        if predictor.lm is not None:
            raise DataError("the loaded program set an LM of its own; refusing it", path=path, field=f"{name}.lm")
    # The loaded state replaces whatever demos the program had, so an earlier record no longer applies.
    program.__dict__.pop("demos_from", None)
    if demos_from is not None:
        program.demos_from = demos_from
    return program
