"""Code groupings shared by the loaders: ICD-9/ICD-10 diagnosis chapters and medication classes.

Grouping keeps the feature space small and the same across ICD versions (MIMIC-IV mixes ICD-9 and
ICD-10 admissions; UCI uses ICD-9), and keeps the features readable in the app's explanations.
"""

from __future__ import annotations

DIAGNOSIS_GROUPS = (
    "infectious",
    "neoplasm",
    "endocrine",
    "blood",
    "mental",
    "nervous",
    "circulatory",
    "respiratory",
    "digestive",
    "genitourinary",
    "pregnancy",
    "skin",
    "musculoskeletal",
    "congenital",
    "perinatal",
    "symptoms",
    "injury",
    "external",
    "factors",
)

_ICD9_RANGES = (
    (1, 139, "infectious"),
    (140, 239, "neoplasm"),
    (240, 279, "endocrine"),
    (280, 289, "blood"),
    (290, 319, "mental"),
    (320, 389, "nervous"),
    (390, 459, "circulatory"),
    (460, 519, "respiratory"),
    (520, 579, "digestive"),
    (580, 629, "genitourinary"),
    (630, 679, "pregnancy"),
    (680, 709, "skin"),
    (710, 739, "musculoskeletal"),
    (740, 759, "congenital"),
    (760, 779, "perinatal"),
    (780, 799, "symptoms"),
    (800, 999, "injury"),
)

_ICD10_LETTERS = {
    "A": "infectious",
    "B": "infectious",
    "C": "neoplasm",
    "E": "endocrine",
    "F": "mental",
    "G": "nervous",
    "H": "nervous",
    "I": "circulatory",
    "J": "respiratory",
    "K": "digestive",
    "L": "skin",
    "M": "musculoskeletal",
    "N": "genitourinary",
    "O": "pregnancy",
    "P": "perinatal",
    "Q": "congenital",
    "R": "symptoms",
    "S": "injury",
    "T": "injury",
    "V": "external",
    "W": "external",
    "X": "external",
    "Y": "external",
    "Z": "factors",
}


def icd9_group(code: str) -> str | None:
    """Chapter of an ICD-9-CM diagnosis code ('428.0', '4280', 'V57', 'E909'); None if unreadable."""
    code = str(code).strip().upper().replace(".", "")
    if not code:
        return None
    if code[0] == "V":
        return "factors"
    if code[0] == "E":
        return "external"
    try:
        number = int(code[:3])
    except ValueError:
        return None
    for low, high, group in _ICD9_RANGES:
        if low <= number <= high:
            return group
    return None


def icd10_group(code: str) -> str | None:
    """Chapter of an ICD-10-CM diagnosis code; D00-D49 are neoplasms, D50-D89 blood diseases."""
    code = str(code).strip().upper().replace(".", "")
    if not code:
        return None
    if code[0] == "D":
        try:
            return "neoplasm" if int(code[1:3]) < 50 else "blood"
        except ValueError:
            return None
    return _ICD10_LETTERS.get(code[0])


def diagnosis_group(code: str, version: int) -> str | None:
    return icd10_group(code) if int(version) == 10 else icd9_group(code)


PROCEDURE_GROUPS = ("surgery", "imaging", "administration", "monitoring", "extracorporeal", "other")

_PCS_SECTIONS = {
    "0": "surgery",
    "1": "surgery",
    "3": "administration",
    "4": "monitoring",
    "5": "extracorporeal",
    "6": "extracorporeal",
    "B": "imaging",
    "C": "imaging",
}


def procedure_group(code: str, version: int) -> str | None:
    """Broad group of an ICD-9-CM procedure code (two-digit chapter) or ICD-10-PCS code (section character)."""
    code = str(code).strip().upper().replace(".", "")
    if not code:
        return None
    if int(version) == 10:
        return _PCS_SECTIONS.get(code[0], "other")
    try:
        chapter = int(code[:2])
    except ValueError:
        return None
    if code.startswith("3995"):  # hemodialysis sits among the ICD-9 vessel operations
        return "extracorporeal"
    if 1 <= chapter <= 86:
        return "surgery"
    if chapter in (87, 88, 92):
        return "imaging"
    if chapter in (89, 90, 91):
        return "monitoring"
    if chapter == 99:
        return "administration"
    return "other"


MEDICATION_CLASSES = {
    "anticoagulant": r"heparin|enoxaparin|warfarin|apixaban|rivaroxaban|dabigatran|fondaparinux|argatroban|bivalirudin",
    "insulin": r"insulin",
    "opioid": r"morphine|hydromorphone|oxycodone|fentanyl|methadone|tramadol|hydrocodone|meperidine|codeine",
    "antibiotic": (
        r"cillin|cef|vancomycin|meropenem|ertapenem|imipenem|azithromycin|floxacin|metronidazole|doxycycline|"
        r"sulfameth|linezolid|daptomycin|gentamicin|tobramycin|clindamycin|nitrofurantoin|rifampin|aztreonam"
    ),
    "diuretic": r"furosemide|torsemide|bumetanide|hydrochlorothiazide|chlorthalidone|spironolactone|metolazone|acetazolamide",
    "beta_blocker": r"olol|carvedilol|labetalol",
    "steroid": r"prednisone|prednisolone|dexamethasone|hydrocortisone",
    "antipsychotic": r"haloperidol|quetiapine|olanzapine|risperidone",
    "vasopressor": r"norepinephrine|epinephrine|vasopressin|phenylephrine|dopamine|dobutamine|levophed",
}


def medication_class_sql(column: str) -> dict[str, str]:
    """DuckDB boolean expressions, one per medication class, over a drug-name column."""
    return {name: f"regexp_matches(lower({column}), '{pattern}')" for name, pattern in MEDICATION_CLASSES.items()}
