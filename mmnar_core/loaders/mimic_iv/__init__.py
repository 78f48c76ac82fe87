"""MIMIC-IV (v2.2 / v3.1 hosp + icu, optional MIMIC-IV-Note and MIMIC-CXR-JPG) into the canonical dataset."""
