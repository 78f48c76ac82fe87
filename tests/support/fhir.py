"""FHIR R4 resources and a realistic Bundle for the input tests: `make_bundle` is a 73-year-old woman admitted
through the emergency department, built from `observation`, `bp_panel`, `medication`, `condition` and
`encounter` resources."""

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def observation(oid, code, display, value=None, unit=None, ucum=None, when="2024-03-02T08:00:00Z", **extra):
    resource = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs" if code in ("8867-4", "9279-1", "59408-5", "8310-5") else "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": "Patient/pat-1"},
        "effectiveDateTime": when,
    }
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": ucum or unit}
    resource.update(extra)
    return resource


def bp_panel(oid, systolic, diastolic, when):
    def component(code, display, value):
        return {
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        }

    resource = observation(oid, "85354-9", "Blood pressure panel with all children optional", when=when)
    resource["component"] = [
        component("8480-6", "Systolic blood pressure", systolic),
        component("8462-4", "Diastolic blood pressure", diastolic),
    ]
    return resource


def medication(mid, rxnorm, name, status="active"):
    return {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm, "display": name}],
            "text": name,
        },
        "subject": {"reference": "Patient/pat-1"},
    }


def condition(cid, snomed, name):
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "verificationStatus": {"coding": [{"code": "confirmed"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": snomed, "display": name}], "text": name},
        "subject": {"reference": "Patient/pat-1"},
    }


def encounter(eid, start, end, klass="IMP", priority=None, disposition=None):
    resource = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
        "subject": {"reference": "Patient/pat-1"},
        "period": {"start": start, "end": end},
    }
    if priority:
        resource["priority"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActPriority", "code": priority}]
        }
    if disposition:
        resource["hospitalization"] = {
            "dischargeDisposition": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": disposition}
                ]
            }
        }
    return resource


def make_bundle() -> dict:
    """A 73-year-old woman admitted through the emergency department with pneumonia and heart failure."""
    resources = [
        {
            "resourceType": "Patient",
            "id": "pat-1",
            "gender": "female",
            "birthDate": "1950-06-15",
            "name": [{"family": "Example", "given": ["Ann"]}],
        },
        encounter("enc-old", "2023-10-02T10:00:00Z", "2023-10-05T09:00:00Z"),
        encounter("enc-1", "2024-03-01T08:00:00Z", "2024-03-06T20:00:00Z", priority="EM", disposition="snf"),
        observation("hr-1", "8867-4", "Heart rate", 88, "/min"),
        observation("hr-2", "8867-4", "Heart rate", 112, "beats/minute", "/min", when="2024-03-01T09:00:00Z"),
        observation("hr-3", "8867-4", "Heart rate", 95, "/min", when="2024-03-03T09:00:00Z"),
        observation("rr-1", "9279-1", "Respiratory rate", 24, "/min"),
        observation("spo2-1", "59408-5", "Oxygen saturation by pulse oximetry", 94, "%"),
        observation("spo2-2", "2708-6", "Oxygen saturation in arterial blood", 89, "%", when="2024-03-01T10:00:00Z"),
        observation("temp-1", "8310-5", "Body temperature", 37.8, "Cel"),
        observation("temp-2", "8310-5", "Body temperature", 101.3, "degF", "[degF]", when="2024-03-01T12:00:00Z"),
        bp_panel("bp-1", 128, 76, "2024-03-01T09:00:00Z"),
        bp_panel("bp-2", 96, 58, "2024-03-02T03:00:00Z"),
        observation("wbc-1", "6690-2", "Leukocytes", 15.1, "10*3/uL", when="2024-03-01T09:30:00Z"),
        observation("wbc-2", "26464-8", "Leukocytes", 13.2, "10*3/uL", when="2024-03-04T06:00:00Z"),
        observation("hb-1", "718-7", "Hemoglobin", 118, "g/L"),
        observation("na-1", "2951-2", "Sodium", 134, "mmol/L"),
        observation("cr-1", "2160-0", "Creatinine", 133, "umol/L"),
        observation("lac-1", "32693-4", "Lactate in blood", 27, "mg/dL"),
        observation("bnp-1", "33762-6", "NT-proBNP", 2400, "pg/mL"),
        observation("alb-1", "1751-7", "Albumin", 31, "g/L"),
        observation("bmi-1", "39156-5", "Body mass index", 31.2, "kg/m2"),
        medication("med-1", "197361", "Amlodipine 5 MG Oral Tablet"),
        medication("med-2", "310798", "Furosemide 40 MG Oral Tablet"),
        medication("med-3", "314076", "Lisinopril 10 MG Oral Tablet"),
        medication("med-4", "197361", "Amlodipine 5 MG Oral Tablet"),  # a repeated order of med-1
        medication("med-5", "308182", "Amoxicillin 500 MG Oral Capsule", status="completed"),
        medication("med-6", "861004", "Metformin 500 MG Oral Tablet", status="stopped"),
        condition("cond-1", "233604007", "Pneumonia"),
        condition("cond-2", "84114007", "Heart failure"),
        condition("cond-3", "13645005", "Chronic obstructive lung disease"),
        {"resourceType": "Procedure", "id": "proc-1", "status": "completed", "subject": {"reference": "Patient/pat-1"}},
    ]
    return {
        "resourceType": "Bundle",
        "id": "b-1",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['resourceType'].lower()}-{r['id']}", "resource": r} for r in resources],
    }
