import numpy as np
import pytest

from clinsynth.data import prefilter
from clinsynth.data.records import InputItem
from clinsynth.data.taxonomy import load_taxonomy

VOCAB = ["fever", "temperature", "cough", "coughs", "patient", "room", "wound", "closed"]


def bag_of_words(texts):
    rows = []
    for t in texts:
        words = t.lower().replace(".", " ").split()
        v = np.array([sum(w == x for w in words) for x in VOCAB], dtype=np.float32) + 1e-3
        rows.append(v / np.linalg.norm(v))
    return np.stack(rows)


def items(n_noise: int = 20) -> list[InputItem]:
    relevant = ["Patient has a fever.", "Temperature is high, fever.", "He coughs at night.", "She coughs all week."]
    noise = [f"The patient was taken to the room {i}." for i in range(n_noise)] + ["The wound was closed."]
    return [InputItem(id=f"r{i}", text=t) for i, t in enumerate(relevant)] + [
        InputItem(id=f"n{i}", text=t) for i, t in enumerate(noise)
    ]


def test_queries_come_from_the_taxonomy_file(mini_taxonomy_path):
    queries = prefilter.category_queries(load_taxonomy(mini_taxonomy_path))
    assert queries["FEVER"] == ["The patient has a fever.", "Temperature 39.2 C."]
    assert queries["COUGH"] == ["The patient coughs."]


def test_select_keeps_the_relevant_sentences_and_samples_negatives(mini_taxonomy_path):
    taxonomy = load_taxonomy(mini_taxonomy_path)
    pool = items()
    selection = prefilter.select(pool, taxonomy, n=6, embed=bag_of_words, negative_fraction=1 / 3, seed=1)
    chosen = {i.id for i in selection.items}
    assert len(selection.items) == 6 and len(chosen) == 6
    assert selection.relevant == {"r0", "r1", "r2", "r3"}
    assert len(chosen - selection.relevant) == 2  # sampled negatives
    assert selection.nearest["r2"] == "COUGH" and selection.nearest["r1"] == "FEVER"
    again = prefilter.select(pool, taxonomy, n=6, embed=bag_of_words, negative_fraction=1 / 3, seed=1)
    assert [i.id for i in again.items] == [i.id for i in selection.items]  # stable, so a rerun resumes


def test_select_rejects_a_bad_negative_share(mini_taxonomy_path):
    with pytest.raises(ValueError, match="negative_fraction"):
        prefilter.select(items(), load_taxonomy(mini_taxonomy_path), 4, bag_of_words, negative_fraction=1.5)
