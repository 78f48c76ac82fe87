"""MMNAR clinical risk explorer: entry page.

The full app (patient page, model card, history) arrives with the app issue; until then this page
says what the project is, what exists, and shows the synthetic demo data so the first README command
always starts something useful.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmnar_core import __version__  # noqa: E402
from mmnar_core.synth.policy import POLICIES  # noqa: E402

st.set_page_config(page_title="MMNAR clinical risk explorer", page_icon="🩺", layout="wide")
st.warning(
    "Research demo. Everything shown here comes from a **synthetic cohort** made by this project; "
    "no real patients, **not for clinical use**."
)
st.title("MMNAR clinical risk explorer")
st.caption(f"mmnar_core {__version__}")
st.markdown(
    """
Predicts 30-day readmission, ICU admission and mortality from multimodal records (structured EHR,
chest X-ray, discharge summary, radiology report) when modalities are **missing not at random**, and
explains each prediction, following *Causal Representation Learning from Multimodal Clinical Records
under Non-Random Modality Missingness* (EMNLP 2025).

**Available now (command line, `python -m mmnar_core --help`)**
- the canonical data model and on-disk dataset format (`docs/data_format.md`);
- the synthetic MMNAR cohort with ground truth (`synth`), real-format loaders for MIMIC-IV, eICU,
  UCI diabetes-130 and COVID-CXR (`build`);
- image, text and tabular encoders with a resumable embedding cache (`embed`);
- the MMNAR model with reconstruction + contrastive training, the pattern rectifier, honest evaluation,
  baselines and ablations (`train`, `evaluate`, `rectify`, `benchmark-models`);
- the predictor interface with what-if over modalities and modality Shapley values (`docs/predictor.md`).

**Coming next**: attributions within each modality; the patient page, model card and saved assessments.
"""
)
st.subheader("Clinician policies in the simulator")
st.table({"policy": list(POLICIES), "ordering habit": [p.description for p in POLICIES.values()]})

st.subheader("Try the simulator")
n = st.slider("patients", 10, 200, 40, step=10)
seed = st.number_input("seed", min_value=0, value=0, step=1)
if st.button("Simulate a small cohort"):
    import tempfile

    from mmnar_core.dataset import load_dataset
    from mmnar_core.patterns import pattern_label
    from mmnar_core.synth.cohort import CohortConfig, build_cohort

    with st.status("Simulating", expanded=True) as status:
        with tempfile.TemporaryDirectory() as tmp:
            st.write("drawing latent state, structured data, availability, images and notes")
            dataset = load_dataset(build_cohort(CohortConfig(n=n, seed=int(seed)), Path(tmp) / "c", progress=False, workers=1))
            names = dataset.manifest.modality_names
            st.write("done")
            status.update(label="Simulated", state="complete")
            counts = dataset.patients["pattern"].value_counts()
            st.bar_chart({pattern_label(p, names): int(c) for p, c in counts.items()})
            first = dataset.images.iloc[0]
            left, right = st.columns(2)
            left.image(str(dataset.root / first["path"]), caption=f"synthetic CXR of {first['patient_id']}")
            report = dataset.text.set_index("patient_id").at[first["patient_id"], "radiology_report"]
            right.text(report if isinstance(report, str) else "(no radiology report for this patient)")
