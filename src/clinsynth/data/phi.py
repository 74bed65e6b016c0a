"""A rule-based scan for protected health information (PHI) in generated sentences.

Generated (bronze) sentences should hold no identifiers at all: the generator is told to
refer to people by role. This scan catches what slips through, for the HIPAA Safe Harbor
kinds that appear in sentence text: names (with a title, after "named", or a common first
name), dates (more precise than a year), ages over 89, record / account numbers, phone
numbers, e-mail addresses and street addresses. It is a filter for synthetic text, tuned
to flag rather than miss; it is not a de-identification tool for real notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
# Common US first names (a cross-section of the census lists); capitalised matches only.
_FIRST_NAMES = (
    "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Nancy Lisa Betty Margaret Sandra "
    "Ashley Dorothy Kimberly Emily Donna Michelle Carol Amanda Melissa Deborah Stephanie Rebecca Sharon Laura "
    "Cynthia Kathleen Amy Shirley Angela Helen Anna Brenda Pamela Nicole Emma Samantha Katherine Christine Debra "
    "Rachel Catherine Carolyn Janet Ruth Maria Heather Diane Virginia Julie Joyce Victoria Kelly Christina Joan "
    "Evelyn Judith Megan Cheryl Andrea Hannah Martha Jacqueline Frances Gloria Ann Teresa Kathryn Sara Janice "
    "Jean Alice Doris Marie Rose Edna Ethel Mildred Lillian Gladys Irene Louise Eleanor "
    "James Robert John Michael David William Richard Joseph Thomas Charles Christopher Daniel Matthew Anthony "
    "Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason Jeffrey Ryan "
    "Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Frank "
    "Alexander Raymond Patrick Jack Dennis Jerry Tyler Aaron Jose Henry Adam Douglas Nathan Peter Zachary Kyle "
    "Walter Harold Jeremy Ethan Carl Keith Roger Gerald Christian Terry Sean Arthur Austin Noah Lawrence Jesse "
    "Joe Bryan Billy Jordan Albert Dylan Bruce Willie Gabriel Alan Juan Logan Wayne Ralph Roy Eugene Randy "
    "Vincent Russell Louis Philip Bobby Johnny Bradley Harry Fred Earl Howard Herbert Leonard Stanley Bob Jim "
    "Tom Bill Mike Dave Ed Ted Sam Ben Max Al Ray Ruby Grace Alma Irma Clara Hazel Ida Mabel Vera Flora"
).split()

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")),
    ("phone", re.compile(r"(?:\(\d{3}\)\s?|\b\d{3}[-.\s])\d{3}[-.\s]\d{4}\b")),
    ("record number", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),  # SSN shape
    (
        "record number",
        re.compile(
            r"\b(?:MRN|SSN|medical record(?: number)?|record (?:number|no\.?)|account|acct|ID)\s*[:#]?\s*\w*\d{3,}",
            re.IGNORECASE,
        ),
    ),
    ("record number", re.compile(r"#\s?\d{4,}|\b\d{7,}\b")),
    ("date", re.compile(r"\b\d{1,2}[/-]\d{1,2}[/-]\d{2,4}\b")),
    ("date", re.compile(r"\b\d{4}-\d{2}-\d{2}\b")),
    ("date", re.compile(rf"\b{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?\s+\d{{4}})?")),
    ("date", re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}\b")),
    ("age over 89", re.compile(r"\b(?:9\d|1[01]\d)[- ](?:year|yr)s?[- ]old\b|\bage[d]?\s+(?:9\d|1[01]\d)\b", re.I)),
    (
        "address",
        re.compile(
            r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|"
            r"Court|Ct|Way|Place|Pl|Terrace)\b\.?"
        ),
    ),
    ("address", re.compile(r"\b[A-Z]{2}\s\d{5}(?:-\d{4})?\b")),  # state + ZIP
    ("name", re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr|Doctor|Nurse)\.?\s+[A-Z][a-z]+")),
    ("name", re.compile(r"\b(?:named|called|name is)\s+[A-Z][a-z]+")),
    ("name", re.compile(r"\b(?:" + "|".join(_FIRST_NAMES) + r")\b")),
)


@dataclass(frozen=True)
class PHIHit:
    kind: str
    text: str


def scan(text: str) -> list[PHIHit]:
    """Every PHI-like span in ``text`` (empty when none), in pattern order."""
    hits = []
    for kind, pattern in _PATTERNS:
        hits += [PHIHit(kind, m.group(0)) for m in pattern.finditer(text)]
    return hits
