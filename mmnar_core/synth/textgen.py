"""Synthetic radiology reports and discharge summaries that read like real ones.

Sentences are picked from many variants, with negations, hedges and irrelevant findings, in the
section structure of real notes (the IU reports and MIMIC-IV-Note discharge summaries: de-identified
fields appear as '___'). Signal phrases are written with a marker `[[concept|assertion|phrase]]`; the
builder strips the marker and records the phrase's exact character span, so explanations can be
checked against where the signal really is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

MARKER = re.compile(r"\[\[([a-z_]+)\|([a-z]+)\|([^\]]+)\]\]")
ASSERTIONS = ("affirmed", "negated", "hedged")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    concept: str
    assertion: str
    phrase: str


class TextBuilder:
    """Appends text and records the character spans of marked signal phrases."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self.spans: list[Span] = []

    def add(self, text: str) -> TextBuilder:
        position = 0
        for match in MARKER.finditer(text):
            self._append(text[position : match.start()])
            concept, assertion, phrase = match.groups()
            if assertion not in ASSERTIONS:
                raise ValueError(f"unknown assertion {assertion!r} in {text!r}")
            self.spans.append(Span(self._length, self._length + len(phrase), concept, assertion, phrase))
            self._append(phrase)
            position = match.end()
        self._append(text[position:])
        return self

    def _append(self, text: str) -> None:
        self._parts.append(text)
        self._length += len(text)

    def text(self) -> str:
        return "".join(self._parts)


class Picker:
    """Random choices from one patient's stream, with a few helpers for readable templates."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def one(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def some(self, options, low: int, high: int) -> list:
        k = int(self.rng.integers(low, high + 1))
        index = self.rng.permutation(len(options))[: min(k, len(options))]
        return [options[i] for i in sorted(index)]


def _sig(concept: str, assertion: str, phrase: str) -> str:
    return f"[[{concept}|{assertion}|{phrase}]]"


def _man(sex: str) -> str:
    return "woman" if sex == "female" else "man"


def _title(sex: str) -> str:
    return "Ms." if sex == "female" else "Mr."


def _pronoun(sex: str) -> str:
    return "She" if sex == "female" else "He"


def _article(number: int) -> str:
    return "an" if str(number).startswith("8") or number in (11, 18) else "a"


# ----------------------------------------------------------------------------- radiology report

_INDICATIONS = {
    "opacity": [
        "fever and productive cough, evaluate for pneumonia",
        "cough and leukocytosis, r/o pneumonia",
        "hypoxia and fever, ? infiltrate",
        "shortness of breath and fever",
    ],
    "effusion": ["dyspnea, evaluate for effusion", "decreased breath sounds at the base", "shortness of breath"],
    "cardiomegaly": [
        "dyspnea on exertion and leg swelling",
        "CHF exacerbation, evaluate for edema",
        "shortness of breath, history of heart failure",
    ],
    "none": [
        "chest pain",
        "preoperative evaluation",
        "weakness",
        "cough",
        "fall, evaluate for acute process",
        "altered mental status",
        "hypoxia",
        "evaluate for acute cardiopulmonary process",
        "line placement",
    ],
}


def _finding_sentence(p: Picker, finding: str, assertion: str, lobe: str, side: str) -> str:
    side_text = side
    if finding == "opacity":
        if assertion == "affirmed":
            return p.one(
                [
                    f"There is {_sig('opacity', 'affirmed', f'focal consolidation in the {lobe}')}.",
                    f"{_sig('opacity', 'affirmed', f'Patchy airspace opacity in the {lobe}')} is new.",
                    f"New {_sig('opacity', 'affirmed', f'opacification of the {lobe}')} concerning for pneumonia.",
                    f"{_sig('opacity', 'affirmed', f'Consolidation involving the {lobe}')} is compatible with pneumonia in the appropriate clinical setting.",
                ]
            )
        if assertion == "hedged":
            return p.one(
                [
                    f"Subtle {_sig('opacity', 'hedged', f'opacity at the {lobe} may represent atelectasis or early pneumonia')}.",
                    f"{_sig('opacity', 'hedged', f'Possible developing infiltrate in the {lobe}')}, recommend follow-up.",
                    f"Hazy {_sig('opacity', 'hedged', f'density in the {lobe}, cannot exclude pneumonia')}.",
                ]
            )
        return p.one(
            [
                f"{_sig('opacity', 'negated', 'No focal consolidation')}.",
                f"The lungs are clear without {_sig('opacity', 'negated', 'focal airspace consolidation')}.",
                f"{_sig('opacity', 'negated', 'No focal airspace opacity to suggest pneumonia')}.",
                f"There is {_sig('opacity', 'negated', 'no focal consolidation or suspicious pulmonary opacity')}.",
            ]
        )
    if finding == "effusion":
        if assertion == "affirmed":
            return p.one(
                [
                    f"{_sig('effusion', 'affirmed', f'{side_text.capitalize()} pleural effusion')} with blunting of the costophrenic angle.",
                    f"There is a {_sig('effusion', 'affirmed', f'small to moderate {side_text} pleural effusion')}.",
                    f"Layering {_sig('effusion', 'affirmed', f'{side_text} pleural fluid')} is present.",
                    f"{_sig('effusion', 'affirmed', f'Blunting of the {side_text} costophrenic angle consistent with effusion')}.",
                ]
            )
        if assertion == "hedged":
            return p.one(
                [
                    f"{_sig('effusion', 'hedged', f'Possible trace {side_text} pleural effusion')}.",
                    f"Minimal blunting of the costophrenic angle, {_sig('effusion', 'hedged', 'small effusion not excluded')}.",
                ]
            )
        return p.one(
            [
                f"{_sig('effusion', 'negated', 'No pleural effusion')} or pneumothorax.",
                f"There is {_sig('effusion', 'negated', 'no evidence of pleural effusion')}.",
                f"{_sig('effusion', 'negated', 'No large pleural effusion')}.",
                f"Costophrenic angles are sharp, {_sig('effusion', 'negated', 'without effusion')}.",
            ]
        )
    if finding == "cardiomegaly":
        if assertion == "affirmed":
            return p.one(
                [
                    f"The heart is {_sig('cardiomegaly', 'affirmed', 'moderately enlarged')}.",
                    f"{_sig('cardiomegaly', 'affirmed', 'Cardiomegaly')} is again noted.",
                    f"{_sig('cardiomegaly', 'affirmed', 'Enlarged cardiac silhouette')}.",
                    f"Heart size is {_sig('cardiomegaly', 'affirmed', 'enlarged')}, unchanged.",
                ]
            )
        if assertion == "hedged":
            return p.one(
                [
                    f"The cardiac silhouette is {_sig('cardiomegaly', 'hedged', 'borderline enlarged, accentuated by AP technique')}.",
                    f"{_sig('cardiomegaly', 'hedged', 'Possible mild cardiomegaly')}.",
                ]
            )
        return p.one(
            [
                f"Heart size is {_sig('cardiomegaly', 'negated', 'normal')}.",
                f"The cardiac silhouette is {_sig('cardiomegaly', 'negated', 'within normal limits')}.",
                f"{_sig('cardiomegaly', 'negated', 'Normal heart size')}.",
                f"The cardiomediastinal silhouette is {_sig('cardiomegaly', 'negated', 'unremarkable')}.",
            ]
        )
    if finding == "hyperinflation":
        return p.one(
            [
                f"The lungs are {_sig('hyperinflation', 'affirmed', 'hyperinflated with flattening of the hemidiaphragms')}.",
                f"{_sig('hyperinflation', 'affirmed', 'Hyperexpanded lungs')} consistent with COPD.",
                f"{_sig('hyperinflation', 'affirmed', 'Emphysematous changes')} are present.",
            ]
        )
    raise ValueError(f"unknown finding {finding!r}")


_IRRELEVANT = [
    "Mild degenerative changes of the thoracic spine.",
    "Calcified granuloma in the left upper lobe.",
    "Surgical clips in the right upper quadrant.",
    "The aorta is tortuous.",
    "Osseous structures are intact.",
    "No pneumothorax.",
    "Median sternotomy wires are intact.",
    "Old healed right rib fractures.",
    "Mediastinal contours are normal.",
    "Pulmonary vasculature is within normal limits.",
    "Visualized upper abdomen is unremarkable.",
    "Atherosclerotic calcification of the aortic knob.",
]
_NORMAL_IMPRESSIONS = [
    "No acute cardiopulmonary process.",
    "No acute cardiopulmonary abnormality.",
    "Normal chest radiograph.",
    "No radiographic evidence of acute disease.",
]


def _read_finding(p: Picker, present: bool) -> str | None:
    """What the radiologist writes about one finding; occasional misses and false alarms, as in life."""
    if present:
        if p.chance(0.06):
            return None if p.chance(0.5) else "negated"
        return "hedged" if p.chance(0.18) else "affirmed"
    if p.chance(0.04):
        return "hedged"
    return "negated" if p.chance(0.65) else None


def radiology_report(row: dict, rng: np.random.Generator) -> tuple[str, list[Span]]:
    """A chest radiograph report consistent with what the image shows (row['finding_*'])."""
    p = Picker(rng)
    b = TextBuilder()
    portable = row.get("view") == "AP"
    exam = (
        "CHEST (PORTABLE AP)"
        if portable
        else p.one(["CHEST (PA AND LAT)", "CHEST (PA AND LATERAL)", "CHEST TWO VIEWS"])
    )
    b.add(f"{p.one(['EXAMINATION', 'EXAM'])}: {exam}\n\n")
    shown = [f for f in ("opacity", "effusion", "cardiomegaly") if row[f"finding_{f}"]]
    indication = p.one(_INDICATIONS[p.one(shown)] if shown and p.chance(0.7) else _INDICATIONS["none"])
    b.add(
        f"{p.one(['INDICATION', 'HISTORY', 'CLINICAL HISTORY'])}: ___-year-old {_man(row['sex'])} with {indication}.\n\n"
    )
    if p.chance(0.6):
        b.add(
            f"TECHNIQUE: {p.one(['Portable AP view of the chest.', 'Single frontal view of the chest.']) if portable else p.one(['PA and lateral views of the chest.', 'Frontal and lateral radiographs of the chest.'])}\n\n"
        )
    b.add(f"COMPARISON: {p.one(['None.', 'None available.', 'Chest radiograph from ___.', 'Prior study of ___.'])}\n\n")

    sentences, impressions = [], []
    order = p.some(["cardiomegaly", "opacity", "effusion"], 3, 3)
    for finding in order:
        assertion = _read_finding(p, bool(row[f"finding_{finding}"]))
        if assertion is None:
            continue
        sentences.append(_finding_sentence(p, finding, assertion, row["opacity_lobe"], row["effusion_side"]))
        if assertion != "negated":
            impressions.append(_finding_sentence(p, finding, assertion, row["opacity_lobe"], row["effusion_side"]))
    if row["finding_hyperinflation"] and p.chance(0.8):
        sentences.append(_finding_sentence(p, "hyperinflation", "affirmed", "", ""))
    sentences.extend(p.some(_IRRELEVANT, 0, 3))
    shuffled = p.rng.permutation(len(sentences))
    b.add("FINDINGS:\n\n" + " ".join(sentences[i] for i in shuffled) + "\n\n")
    if impressions:
        if len(impressions) > 1 and p.chance(0.6):
            b.add("IMPRESSION:\n\n" + "\n".join(f"{k}. {s}" for k, s in enumerate(impressions, 1)) + "\n")
        else:
            b.add("IMPRESSION:\n\n" + " ".join(impressions) + "\n")
    else:
        b.add(f"IMPRESSION:\n\n{p.one(_NORMAL_IMPRESSIONS)}\n")
    return b.text(), b.spans


# ----------------------------------------------------------------------------- discharge summary

_PMH_FILLER = [
    "hypertension",
    "hyperlipidemia",
    "type 2 diabetes mellitus",
    "GERD",
    "osteoarthritis",
    "hypothyroidism",
    "BPH",
    "chronic kidney disease stage 3",
    "atrial fibrillation on apixaban",
    "depression",
    "obstructive sleep apnea",
    "gout",
    "remote appendectomy",
]
_HOME_MEDS = [
    "Atorvastatin 40 mg PO QPM",
    "Aspirin 81 mg PO DAILY",
    "Metformin 500 mg PO BID",
    "Omeprazole 20 mg PO DAILY",
    "Levothyroxine 75 mcg PO DAILY",
    "Tamsulosin 0.4 mg PO QHS",
    "Acetaminophen 650 mg PO Q6H:PRN pain",
    "Docusate Sodium 100 mg PO BID",
    "Senna 8.6 mg PO BID:PRN constipation",
    "Vitamin D 1000 UNIT PO DAILY",
    "Amlodipine 5 mg PO DAILY",
    "Sertraline 50 mg PO DAILY",
]
_CONDITION_MEDS = {
    "heart_failure": [
        "Furosemide 40 mg PO DAILY",
        "Metoprolol Succinate XL 50 mg PO DAILY",
        "Lisinopril 10 mg PO DAILY",
        "Spironolactone 25 mg PO DAILY",
    ],
    "copd": [
        "Tiotropium Bromide 1 CAP IH DAILY",
        "Albuterol Inhaler 2 PUFF IH Q4H:PRN wheezing",
        "Fluticasone-Salmeterol Diskus (250/50) 1 INH IH BID",
        "PredniSONE 40 mg PO DAILY, taper as directed",
    ],
    "pneumonia": [
        "Levofloxacin 750 mg PO Q24H, last dose ___",
        "Amoxicillin-Clavulanic Acid 875 mg PO Q12H",
        "Cefpodoxime Proxetil 200 mg PO Q12H",
        "Azithromycin 250 mg PO DAILY",
    ],
}
_COMPLAINTS = {
    "pneumonia": ["Fever, cough", "Productive cough", "Shortness of breath"],
    "heart_failure": ["Dyspnea on exertion", "Leg swelling", "Shortness of breath", "Weight gain"],
    "sepsis": ["Fever, hypotension", "Altered mental status", "Fevers and chills"],
    "copd": ["Wheezing", "Shortness of breath"],
    "pleural_effusion": ["Shortness of breath", "Pleuritic chest pain"],
    "none": ["Chest pain", "Weakness", "Fall", "Abdominal pain", "Dizziness", "Nausea"],
}


def _diagnosis_paragraph(p: Picker, condition: str, present: bool, row: dict) -> str | None:
    """A '# problem' paragraph of the hospital course: documented diagnoses, or a condition ruled out."""
    if condition == "pneumonia":
        if present:
            return p.one(
                [
                    f"# {_sig('pneumonia', 'affirmed', 'Community-acquired pneumonia')}: Presented with fever and cough; "
                    f"imaging with {row['opacity_lobe']} infiltrate. Treated with ceftriaxone and azithromycin, transitioned to oral antibiotics.",
                    f"# {_sig('pneumonia', 'affirmed', 'Pneumonia')}: Started on broad-spectrum antibiotics on admission, narrowed once "
                    "sputum culture returned. Oxygen requirement improved.",
                    f"# Hypoxemic respiratory failure secondary to {_sig('pneumonia', 'affirmed', 'lobar pneumonia')}: weaned to room air by day ___.",
                ]
            )
        return (
            p.one(
                [
                    f"# Cough: {_sig('pneumonia', 'negated', 'no evidence of pneumonia')} on imaging; antibiotics were not continued.",
                    f"# Leukocytosis: {_sig('pneumonia', 'hedged', 'possible aspiration pneumonitis')}, resolved without antibiotics.",
                ]
            )
            if p.chance(0.25)
            else None
        )
    if condition == "heart_failure":
        if present:
            return p.one(
                [
                    f"# {_sig('heart_failure', 'affirmed', 'Acute on chronic systolic heart failure')}: diuresed with IV furosemide, "
                    "net negative several liters; transitioned to oral diuretic. Discharge weight ___.",
                    f"# {_sig('heart_failure', 'affirmed', 'CHF exacerbation')}: likely precipitated by dietary indiscretion. "
                    "Diuresed to euvolemia. Echo showed reduced ejection fraction.",
                    f"# {_sig('heart_failure', 'affirmed', 'Decompensated heart failure with reduced EF')}: responded to diuresis.",
                ]
            )
        return (
            p.one(
                [
                    f"# Dyspnea: BNP not elevated, {_sig('heart_failure', 'negated', 'no signs of volume overload')}.",
                    f"# Leg swelling: {_sig('heart_failure', 'negated', 'heart failure was felt unlikely')}; venous stasis.",
                ]
            )
            if p.chance(0.15)
            else None
        )
    if condition == "sepsis":
        if present:
            return p.one(
                [
                    f"# {_sig('sepsis', 'affirmed', 'Sepsis')}: met SIRS criteria with lactate elevation on admission; "
                    "received IV fluids and broad-spectrum antibiotics. Blood cultures ___.",
                    f"# {_sig('sepsis', 'affirmed', 'Septic shock')}: required vasopressors for less than 24 hours, weaned off.",
                    f"# {_sig('sepsis', 'affirmed', 'Severe sepsis from a pulmonary source')}: treated with vancomycin and cefepime.",
                ]
            )
        return (
            p.one(
                [
                    f"# Fever: {_sig('sepsis', 'negated', 'sepsis was ruled out')}; cultures no growth to date.",
                    f"# Tachycardia: {_sig('sepsis', 'hedged', 'early sepsis was considered')} but resolved with fluids.",
                ]
            )
            if p.chance(0.2)
            else None
        )
    if condition == "copd":
        if present:
            return p.one(
                [
                    f"# {_sig('copd', 'affirmed', 'COPD exacerbation')}: treated with nebulizers and a prednisone burst; "
                    "back to baseline home oxygen.",
                    f"# {_sig('copd', 'affirmed', 'Chronic obstructive pulmonary disease')}: continued home inhalers, no exacerbation.",
                    f"# {_sig('copd', 'affirmed', 'COPD')}: wheezing on admission, improved with steroids and azithromycin.",
                ]
            )
        return None
    if condition == "pleural_effusion":
        side = str(row["effusion_side"]).capitalize()
        if present:
            return p.one(
                [
                    f"# {_sig('pleural_effusion', 'affirmed', side + ' pleural effusion')}: "
                    "diagnostic and therapeutic thoracentesis with ___ cc removed; fluid transudative.",
                    f"# {_sig('pleural_effusion', 'affirmed', 'Pleural effusion')}: small, managed with diuresis, no tap required.",
                ]
            )
        return None
    raise ValueError(condition)


def _severity_sentence(p: Picker, perceived: float) -> str:
    if perceived > 1.2:
        return p.one(
            [
                f"Hospital course was {_sig('severity', 'affirmed', 'complicated by transfer to the ICU for hemodynamic instability')}.",
                f"The patient had a {_sig('severity', 'affirmed', 'prolonged and complicated hospitalization')}.",
                f"Course {_sig('severity', 'affirmed', 'notable for rapid response and escalation of care')}.",
            ]
        )
    if perceived < -0.5:
        return p.one(
            [
                f"Hospital course was {_sig('severity', 'negated', 'uncomplicated')}.",
                f"{_sig('severity', 'negated', 'Uneventful stay')}, ambulating independently by discharge.",
                f"Patient {_sig('severity', 'negated', 'remained clinically stable')} throughout the admission.",
            ]
        )
    return p.one(["Patient improved steadily over the admission.", "Course was otherwise without event.", ""])


def discharge_summary(row: dict, rng: np.random.Generator) -> tuple[str, list[Span]]:
    """A MIMIC-IV-Note style discharge summary consistent with the latent state and the stay."""
    p = Picker(rng)
    b = TextBuilder()
    present = [c for c in ("sepsis", "pneumonia", "heart_failure", "pleural_effusion", "copd") if row[c]]
    sex = "F" if row["sex"] == "female" else "M"
    b.add(
        " \nName:  ___                     Unit No:   ___\n \nAdmission Date:  ___              Discharge Date:   ___\n \n"
    )
    b.add(
        f"Date of Birth:  ___             Sex:   {sex}\n \nService: {p.one(['MEDICINE', 'MEDICINE', 'CARDIOLOGY']) if 'heart_failure' in present else 'MEDICINE'}\n \n"
    )
    b.add(
        f"Allergies: \n{p.one(['No Known Allergies / Adverse Drug Reactions', 'Penicillins', 'Sulfa (Sulfonamide Antibiotics)', 'lisinopril'])}\n \n"
    )
    b.add(f"Attending: ___.\n \nChief Complaint:\n{p.one(_COMPLAINTS[p.one(present) if present else 'none'])}\n \n")
    b.add(
        f"Major Surgical or Invasive Procedure:\n{'Thoracentesis' if row['pleural_effusion'] and p.chance(0.5) else 'None'}\n \n"
    )
    history = ", ".join(p.some(_PMH_FILLER, 1, 4))
    known = [c for c in ("copd", "heart_failure") if row[c] and p.chance(0.6)]
    known_text = "".join(
        f", {_sig(c, 'affirmed', {'copd': 'COPD on home oxygen', 'heart_failure': 'HFrEF'}[c])}" for c in known
    )
    age = int(row["age"])
    admitted = f"{_pronoun(row['sex'])} was admitted to medicine."
    b.add(
        f"History of Present Illness:\n{_title(row['sex'])} ___ is {_article(age)} {age} year old {_man(row['sex'])} with a history of {history}{known_text} "
        f"who presents with {p.one(['several days of', 'one week of', 'worsening', 'acute onset'])} "
        f"{p.one(_COMPLAINTS[p.one(present) if present else 'none']).lower()}. "
        f"{p.one(['In the ED, initial vitals were notable for', 'On arrival vitals were'])} HR {int(row['heart_rate_max'])}, "
        f"BP {int(row['sbp_min'])}/___, RR {int(row['resp_rate_max'])}, SpO2 {int(row['spo2_min'])}% on "
        f"{p.one(['RA', '2L NC', 'room air'])}. {p.one(['Labs were otherwise unremarkable.', admitted, 'Given the above, the patient was admitted for further management.'])}\n \n"
    )
    b.add("Past Medical History:\n" + "\n".join(f"- {item}" for item in p.some(_PMH_FILLER, 2, 5)) + "\n \n")
    b.add(
        f"Social History:\n___\nFamily History:\n{p.one(['Noncontributory.', 'Mother with hypertension.', 'Father with MI in his 60s.'])}\n \n"
    )

    b.add("Brief Hospital Course:\n")
    perceived = row["severity"] + p.rng.normal(0, 0.5)
    severity_text = _severity_sentence(p, perceived)
    if severity_text:
        b.add(severity_text + "\n\n")
    for condition in p.some(["sepsis", "pneumonia", "heart_failure", "pleural_effusion", "copd"], 5, 5):
        documented = row[condition] and p.chance(0.95)
        paragraph = _diagnosis_paragraph(p, condition, bool(documented), row)
        if paragraph:
            b.add(paragraph + "\n\n")
    b.add(
        "CHRONIC ISSUES:\n"
        + "\n".join(
            f"# {item.capitalize()}: {p.one(['continued home regimen', 'stable, no changes', 'monitored, no acute issues'])}."
            for item in p.some(_PMH_FILLER, 1, 3)
        )
        + "\n \n"
    )
    meds = [m for c in ("heart_failure", "copd", "pneumonia") if row[c] for m in p.some(_CONDITION_MEDS[c], 1, 3)]
    meds += p.some(_HOME_MEDS, 2, 6)
    b.add("Discharge Medications:\n" + "\n".join(f"{k}. {m}" for k, m in enumerate(meds, 1)) + "\n \n")
    disposition = {
        "home": "Home",
        "home_with_services": "Home With Service",
        "skilled_nursing": "Extended Care",
        "transfer": "Transfer to outside hospital",
    }[row["discharge_disposition"]]
    b.add(f"Discharge Disposition:\n{disposition}\n \n")
    primary = [c for c in present if p.chance(0.9)]
    names = {
        "sepsis": "Sepsis",
        "pneumonia": "Pneumonia",
        "heart_failure": "Acute on chronic heart failure",
        "pleural_effusion": "Pleural effusion",
        "copd": "COPD",
    }
    b.add(
        "Discharge Diagnosis:\n"
        + (
            "Primary: " + ", ".join(_sig(c, "affirmed", names[c]) for c in primary) + "\n"
            if primary
            else f"Primary: {p.one(['Chest pain, non-cardiac', 'Weakness', 'Syncope', 'Dehydration'])}\n"
        )
    )
    b.add("Secondary: " + ", ".join(p.some(_PMH_FILLER, 1, 3)) + "\n \n")
    activity = (
        "Ambulatory - Independent"
        if perceived < 0.3
        else p.one(
            [
                "Ambulatory - requires assistance or aid (walker or cane)",
                "Out of Bed with assistance to chair or wheelchair",
            ]
        )
    )
    b.add(
        f"Discharge Condition:\nMental Status: Clear and coherent.\nLevel of Consciousness: Alert and interactive.\nActivity Status: {activity}.\n \n"
    )
    b.add(
        f"Discharge Instructions:\nDear {_title(row['sex'])} ___,\n\nIt was a pleasure taking care of you at ___. "
        f"{p.one(['You were admitted because you were short of breath.', 'You came to the hospital because you were not feeling well.', 'You were hospitalized for evaluation of your symptoms.'])} "
        f"{p.one(['Please take all medications as prescribed and keep your follow-up appointments.', 'Please weigh yourself every morning and call your doctor if your weight goes up by more than 3 lbs.', 'Please continue your antibiotics until the course is finished.'])} "
        "If you develop chest pain, fever, or worsening shortness of breath, please return to the emergency department.\n\n"
        "We wish you the best,\nYour ___ Care Team\n \nFollowup Instructions:\n___\n"
    )
    return b.text(), b.spans
