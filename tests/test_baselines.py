"""Baselines: the taxonomy keyword lexicon (with negation) and TF-IDF + logistic regression."""

from __future__ import annotations

from clinsynth.data.taxonomy import load_taxonomy
from clinsynth.model.baselines import KeywordLexicon, TfidfLogReg
from clinsynth.model.metrics import multilabel_scores
from tests.conftest import ad_taxonomy
from tests.mini_data import records


def test_lexicon_terms_come_from_the_taxonomy_definitions():
    lexicon = KeywordLexicon.from_taxonomy(ad_taxonomy())
    assert "donepezil" in lexicon.terms["TREATMENT"] and "aricept" in lexicon.terms["TREATMENT"]
    assert "mmse" in lexicon.terms["COGNITIVE_TESTING"]
    assert "hallucinations" in lexicon.terms["NEUROPSYCHIATRIC_SYMPTOMS"]


def test_lexicon_matches_whole_words_and_skips_negated_mentions():
    lexicon = KeywordLexicon.from_taxonomy(ad_taxonomy())
    predicted = lexicon.predict(
        [
            "Started donepezil 5 mg nightly.",
            "She denies hallucinations.",
            "No hallucinations; she has apathy.",
            "Commission was paid.",  # no whole-word term inside
        ]
    )
    assert predicted[0] == ["TREATMENT"]
    assert predicted[1] == []
    assert predicted[2] == ["NEUROPSYCHIATRIC_SYMPTOMS"]
    assert predicted[3] == []


def test_tfidf_baseline_learns_the_training_labels(mini_taxonomy_path):
    taxonomy = load_taxonomy(mini_taxonomy_path)
    train = records("train") + records("dev") + records("test")
    model = TfidfLogReg(taxonomy.names).fit(train)
    scores = multilabel_scores([r.labels for r in train], model.predict([r.text for r in train]), taxonomy)
    assert scores["micro_f1"] >= 0.9
    assert model.scores(["Febrile."]).shape == (1, 2)
