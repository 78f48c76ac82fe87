"""Which FHIR codes feed which model feature: data only, read by fhir.py and printed in docs/inputs.md.

A feature named here is filled only if the model has it (Predictor.features); a code of a feature the
model lacks is ignored with a note. Units are converted by mmnar_core.inputs.units.
"""

from __future__ import annotations

LOINC_SYSTEM = "http://loinc.org"

# LOINC code -> (feature, aggregation over the bundle's Observations, display name)
#   max / min: the largest / smallest value of all Observations (vitals over the stay)
#   latest: the value with the latest effective time (labs)
LOINC_FEATURES: dict[str, tuple[str, str, str]] = {
    "8867-4": ("heart_rate_max", "max", "Heart rate"),
    "9279-1": ("resp_rate_max", "max", "Respiratory rate"),
    "59408-5": ("spo2_min", "min", "Oxygen saturation in arterial blood by pulse oximetry"),
    "2708-6": ("spo2_min", "min", "Oxygen saturation in arterial blood"),
    "8310-5": ("temperature_max", "max", "Body temperature"),
    "8331-1": ("temperature_max", "max", "Oral temperature"),
    "8480-6": ("sbp_min", "min", "Systolic blood pressure"),
    "6690-2": ("wbc", "latest", "Leukocytes [#/volume] in Blood by Automated count"),
    "26464-8": ("wbc", "latest", "Leukocytes [#/volume] in Blood"),
    "718-7": ("hemoglobin", "latest", "Hemoglobin [Mass/volume] in Blood"),
    "2951-2": ("sodium", "latest", "Sodium [Moles/volume] in Serum or Plasma"),
    "2160-0": ("creatinine", "latest", "Creatinine [Mass/volume] in Serum or Plasma"),
    "2524-7": ("lactate", "latest", "Lactate [Moles/volume] in Serum or Plasma"),
    "32693-4": ("lactate", "latest", "Lactate [Moles/volume] in Blood"),
    "33762-6": ("nt_probnp", "latest", "NT-proBNP [Mass/volume] in Serum or Plasma"),
    "1751-7": ("albumin", "latest", "Albumin [Mass/volume] in Serum or Plasma"),
}

# panels whose components (looked up in LOINC_FEATURES) carry the values
LOINC_PANELS: dict[str, str] = {
    "85354-9": "Blood pressure panel with all children optional",
    "55284-4": "Blood pressure systolic and diastolic",
}

# Observation.status values whose Observations are skipped (with a note)
SKIPPED_OBSERVATION_STATUS = frozenset({"entered-in-error", "cancelled"})
# MedicationRequest.status values counted in n_medications
COUNTED_MEDICATION_STATUS = frozenset({"active", "completed"})

PATIENT_GENDER = {"female": "female", "male": "male"}  # other / unknown -> not measured, with a note

# Encounter -> admission_type, tried in this order: priority code (v3 ActPriority), class code (v3 ActCode),
# hospitalization.admitSource code, then words in type / priority / class text
ENCOUNTER_PRIORITY = {"EM": "emergency", "UR": "urgent", "EL": "elective", "R": "elective"}
ENCOUNTER_CLASS = {"EMER": "emergency"}
ENCOUNTER_ADMIT_SOURCE = {"emd": "emergency"}
ADMISSION_WORDS = (("emergency", "emergency"), ("urgent", "urgent"), ("elective", "elective"))

# Encounter.hospitalization.dischargeDisposition code (terminology.hl7.org/CodeSystem/discharge-disposition)
# -> discharge_disposition; None = no model category (left not measured, with a note)
DISCHARGE_DISPOSITION = {
    "home": "home",
    "alt-home": "home",
    "snf": "skilled_nursing",
    "long": "skilled_nursing",
    "other-hcf": "transfer",
    "rehab": "transfer",
    "psy": "transfer",
    "hosp": "transfer",
    "aadvice": None,
    "exp": None,
    "oth": None,
}
# words in the disposition's text / display when its code is not in the table (first match wins)
DISCHARGE_WORDS = (
    ("home health", "home_with_services"),
    ("home with services", "home_with_services"),
    ("home care", "home_with_services"),
    ("skilled nursing", "skilled_nursing"),
    ("nursing facility", "skilled_nursing"),
    ("transfer", "transfer"),
    ("home", "home"),
)

# Encounter.class codes that count as a hospital admission for prior_admissions_12m
INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC"})
