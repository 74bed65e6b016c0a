import pytest

from clinsynth.data.phi import scan


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Seen by Dr. Patel in clinic.", "name"),
        ("Her daughter Mary manages her pills.", "name"),
        ("A man named Harold was confused.", "name"),
        ("Admitted on 03/14/2021 with confusion.", "date"),
        ("Seen on March 3rd, 2021.", "date"),
        ("Seen on 3 March for follow-up.", "date"),
        ("Call 555-123-4567 with concerns.", "phone"),
        ("Call (555) 123-4567 with concerns.", "phone"),
        ("MRN: 00482913.", "record number"),
        ("SSN 123-45-6789 on file.", "record number"),
        ("She lives at 42 Oak Street.", "address"),
        ("Email jdoe@example.com for records.", "email"),
        ("A 93-year-old woman with dementia.", "age over 89"),
    ],
)
def test_flags_identifiers(text: str, kind: str):
    assert kind in {h.kind for h in scan(text)}


@pytest.mark.parametrize(
    "text",
    [
        "MMSE 24/30 today.",
        "MoCA score of 18/30 in 2019.",
        "The patient may need help with bathing.",
        "Her daughter manages her medications.",
        "A 78-year-old man with memory loss.",
        "Donepezil 10 mg daily was continued.",
        "ED course was uneventful.",
        "Alzheimer's dementia, moderate stage.",
    ],
)
def test_leaves_clinical_text_alone(text: str):
    assert scan(text) == []
