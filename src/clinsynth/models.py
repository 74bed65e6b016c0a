"""Training a classifier on a named mix, and the default model ``predict`` falls back to."""

from __future__ import annotations

import json
from pathlib import Path

from clinsynth.classifier import SignsClassifier, TrainingBudget
from clinsynth.gold import load_gold
from clinsynth.metrics import multilabel_scores
from clinsynth.mixes import MixSources, load_mix
from clinsynth.paths import OUTPUT_DIR, PROJECT_ROOT
from clinsynth.taxonomy import Taxonomy

DEFAULT_MODEL_DIR = OUTPUT_DIR / "model"
AUGMENTATION_REPORT = PROJECT_ROOT / "reports" / "augmentation.json"
FALLBACK_MIX = "gold"


def default_mix(report: Path = AUGMENTATION_REPORT) -> str:
    """The mix with the best mean gold-dev micro F1 in the augmentation report, else gold."""
    if report.exists():
        summary = json.loads(report.read_text(encoding="utf-8"))
        mixes = [s for s in summary.get("systems", []) if s.get("kind") == "mix" and "dev_micro_f1" in s]
        if mixes:
            return max(mixes, key=lambda s: s["dev_micro_f1"][0])["system"]
    return FALLBACK_MIX


def train_model(
    mix: str,
    taxonomy: Taxonomy,
    out_dir: Path,
    budget: TrainingBudget | None = None,
    seed: int = 0,
    sources: MixSources | None = None,
    show_progress: bool = True,
) -> SignsClassifier:
    """Train on ``mix``, tune thresholds on gold dev, score dev and test, save with its card."""
    budget = budget or TrainingBudget()
    sources = sources or MixSources()
    gold = load_gold(sources.gold_dir, taxonomy)
    train = load_mix(mix, taxonomy, sources)
    classifier = SignsClassifier.train(
        train, taxonomy, dev=gold["dev"], budget=budget, seed=seed, mix=mix, show_progress=show_progress
    )
    for split, target in (("dev", "dev_scores"), ("test", "test_scores")):
        records = gold[split]
        scores = multilabel_scores([r.labels for r in records], classifier.predict([r.text for r in records]), taxonomy)
        setattr(classifier.info, target, scores)
    classifier.save(out_dir)
    return classifier


def ensure_default_model(taxonomy: Taxonomy, model_dir: Path = DEFAULT_MODEL_DIR) -> Path:
    """The default model's directory, trained first (a few minutes) if it does not exist yet."""
    if (model_dir / "clinsynth.json").exists():
        return model_dir
    mix = default_mix()
    print(f"no default model in {model_dir} yet: training one on {mix} (a few minutes on 2 cores)", flush=True)
    train_model(mix, taxonomy, model_dir)
    return model_dir
