"""The patient page's inputs and actions. Widget values live in `st.session_state` under stable keys
(`feat_<feature>`, `text_<modality>`, images in `state.images`), so a bad upload changes nothing and
every valid field stays filled; uploads are validated by `mmnar_core.inputs` and only then applied."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import streamlit as st

from mmnar_app.demo_patients import load_demo_patients
from mmnar_app.display import modality_name, task_name
from mmnar_app.logging_setup import (
    get_logger,
    redact_fhir_message,
    register_fhir_identifiers,
    register_sensitive,
    safe_error,
)
from mmnar_app.plain_text import plain
from mmnar_app.remote import RemoteServiceError
from mmnar_app.service import STEP_LABELS, AnalysisRefused
from mmnar_core.inputs import (
    InputError,
    InputErrors,
    build_record,
    parse_structured_file,
    parse_structured_form,
    read_image_upload,
    read_text_upload,
)
from mmnar_core.results import ALL_TASKS
from mmnar_core.schema import FeatureKind, FeatureSpec, ModalityKind

if TYPE_CHECKING:
    from mmnar_app.service import ModelService
    from mmnar_core.explain.explanation import Explanation
    from mmnar_core.model_info import ModelInfo
    from mmnar_core.schema import PatientRecord

log = get_logger("mmnar_app.patient")
NEW_PATIENT = "New patient"
NOT_RECORDED = "(not recorded)"
IMAGE_LIMIT_MB, TEXT_LIMIT_CHARS, STRUCTURED_LIMIT_MB = 20, 200_000, 5


@st.cache_resource(show_spinner=False)  # read-only: shared, not copied on every rerun
def _demos():
    return {d.label: d for d in load_demo_patients()}


def patient_choices() -> list[str]:
    return [*_demos(), NEW_PATIENT]


def _feature_key(name: str) -> str:
    return f"feat_{name}"


def _text_key(name: str) -> str:
    return f"text_{name}"


def init_state(info: ModelInfo) -> None:
    state = st.session_state
    if "images" not in state:
        state.images = {}
        state.messages = {}
        state.patient_choice = patient_choices()[0]
        load_choice(info)


def _touch() -> None:
    """An input changed: the analysis on screen no longer matches the page (cheaper than re-hashing the
    inputs on every rerun)."""
    st.session_state.inputs_version = st.session_state.get("inputs_version", 0) + 1


def load_choice(info: ModelInfo) -> None:
    """Fill every field from the chosen demo patient, or clear them for a new patient."""
    state = st.session_state
    demo = _demos().get(state.patient_choice)
    values = demo.structured if demo else {}
    for feature in info.features:
        value = values.get(feature.name)
        if feature.kind is FeatureKind.CATEGORICAL:
            value = value if value in (feature.categories or ()) else NOT_RECORDED
        elif value is not None:
            value = float(value)
        state[_feature_key(feature.name)] = value
    state.images = {}
    for modality in info.modalities:
        if modality.kind is ModalityKind.IMAGE and demo and modality.name in demo.images:
            state.images[modality.name] = read_image_upload(
                f"{demo.key}_{modality.name}.png", demo.images[modality.name], IMAGE_LIMIT_MB * 2**20
            )
        if modality.kind is ModalityKind.TEXT:
            state[_text_key(modality.name)] = demo.texts.get(modality.name, "") if demo else ""
    state.patient_label = demo.label.split(":")[0] if demo else ""
    state.messages = {}
    state.pop("analysis", None)
    _touch()


# ------------------------------------------------------------------ structured
def _form_values(info: ModelInfo) -> dict:
    out = {}
    for feature in info.features:
        value = st.session_state.get(_feature_key(feature.name))
        out[feature.name] = None if value == NOT_RECORDED else value
    return out


def _apply_structured(parsed) -> None:
    _touch()
    for name, value in parsed.values.items():
        key = _feature_key(name)
        if isinstance(value, str):
            st.session_state[key] = value
        else:
            st.session_state[key] = None if value is None else float(value)


def _on_structured_upload(info: ModelInfo) -> None:
    state = st.session_state
    upload = state.get("structured_upload")
    if upload is None:
        return
    data = upload.getvalue()
    register_sensitive(upload.name)
    identifiers = register_fhir_identifiers(data) if len(data) <= STRUCTURED_LIMIT_MB * 2**20 else []
    try:
        if len(data) > STRUCTURED_LIMIT_MB * 2**20:
            raise InputError(
                f"structured upload {upload.name}",
                f"the file is {len(data):,} bytes, over the limit of {STRUCTURED_LIMIT_MB} MB",
                "a CSV, JSON or FHIR file up to 5 MB",
                kind="too_large",
            )
        parsed = parse_structured_file(upload.name, data, info.features)
    except (InputError, InputErrors) as error:
        # shown to the user who uploaded the file, without the identifiers of a FHIR Patient (ids, names...)
        state.messages["structured"] = ("error", redact_fhir_message(str(error), identifiers))
        return
    _apply_structured(parsed)
    notes = "; ".join(parsed.notes)
    state.messages["structured"] = (
        "success",
        redact_fhir_message(
            f"Read {upload.name} ({parsed.source}): {sum(v is not None for v in parsed.values.values())} values filled "
            "in below." + (f" {notes}" if notes else ""),
            identifiers,
        ),
    )


def _show_message(slot: str) -> None:
    message = st.session_state.messages.get(slot)
    if message:
        kind, text = message
        (st.error if kind == "error" else st.success)(plain(text))  # quotes the uploaded file


def structured_inputs(info: ModelInfo, modality: str) -> None:
    st.file_uploader(
        "Fill the form from a file: CSV (a column per feature and one row, or feature,value[,unit] rows), "
        "JSON ({feature: value} or {feature: {value, unit}}) or a FHIR R4 Bundle (Patient, Observation "
        "with LOINC codes, Condition, MedicationRequest). Or type the values below.",
        key="structured_upload",
        on_change=_on_structured_upload,
        args=(info,),
    )
    _show_message("structured")
    features = [f for f in info.features if f.modality == modality]
    columns = st.columns(3)
    for i, feature in enumerate(features):
        column = columns[i % 3]
        unit = f" ({feature.unit})" if feature.unit else ""
        if feature.kind is FeatureKind.CATEGORICAL:
            _category_input(column, feature)
        else:
            low, high = feature.valid_range or (None, None)
            hint = f" Plausible range {low:g} to {high:g}{unit}." if low is not None else ""
            column.number_input(
                f"{feature.name}{unit}",
                value=None,
                key=_feature_key(feature.name),
                on_change=_touch,
                help=f"{feature.description}.{hint} Leave empty if not measured.",
                placeholder="not measured",
            )


def _category_input(column, feature: FeatureSpec) -> None:
    """A selectbox of the model's categories; where the model takes unseen values (`accepts_unknown`), also
    a typed or uploaded other value, with a note under it that the model treats it as unknown."""
    key = _feature_key(feature.name)
    categories = feature.categories or ()
    options = [NOT_RECORDED, *categories]
    if not feature.accepts_unknown:
        column.selectbox(feature.name, options, key=key, help=feature.description, on_change=_touch)
        return
    current = st.session_state.get(key)
    if isinstance(current, str) and current not in options:
        options.append(current)  # a value read from a file: keep it selectable instead of resetting it
    column.selectbox(
        feature.name,
        options,
        key=key,
        on_change=_touch,
        accept_new_options=True,
        help=f"{feature.description}. Another value may be typed: the model treats it as unknown.",
    )
    value = st.session_state.get(key)
    if isinstance(value, str) and value != NOT_RECORDED and value not in categories:
        column.caption(f"{value!r} is not a category the model was trained on; treated as unknown")


# ------------------------------------------------------------------ images and notes
def _on_upload(modality: str, apply) -> None:
    """Validate the file just uploaded for `modality` with `apply(name, bytes)`, which stores it only when
    valid; the outcome is shown as the modality's message."""
    state = st.session_state
    upload = state.get(f"upload_{modality}")
    if upload is None:
        return
    register_sensitive(upload.name)
    try:
        apply(upload.name, upload.getvalue())
        _touch()
        state.messages[modality] = ("success", f"{upload.name} read.")
    except (InputError, InputErrors) as error:
        state.messages[modality] = ("error", str(error))


def _on_image_upload(modality: str) -> None:
    def apply(name: str, data: bytes) -> None:
        st.session_state.images[modality] = read_image_upload(name, data, IMAGE_LIMIT_MB * 2**20)

    _on_upload(modality, apply)


def _remove_image(modality: str) -> None:
    _touch()
    st.session_state.images.pop(modality, None)
    st.session_state.messages.pop(modality, None)


def image_input(info: ModelInfo, modality: str) -> None:
    st.file_uploader(
        f"{modality_name(modality)}: PNG, JPEG or DICOM, up to {IMAGE_LIMIT_MB} MB",
        key=f"upload_{modality}",
        on_change=_on_image_upload,
        args=(modality,),
    )
    _show_message(modality)
    upload = st.session_state.images.get(modality)
    if upload is None:
        st.caption("No image: the model treats this modality as missing.")
        return
    st.image(
        upload.preview,
        caption=f"{upload.filename} · {upload.kind.upper()} · {upload.width} x {upload.height} px",
        width=320,
    )
    st.button(
        f"Remove {modality_name(modality).lower()}", key=f"remove_{modality}", on_click=_remove_image, args=(modality,)
    )


def _on_text_upload(modality: str) -> None:
    def apply(name: str, data: bytes) -> None:
        text = read_text_upload(f"{modality_name(modality)} file {name}", data, TEXT_LIMIT_CHARS)
        register_sensitive(text)
        st.session_state[_text_key(modality)] = text

    _on_upload(modality, apply)


def text_input(info: ModelInfo, modality: str) -> None:
    st.file_uploader(
        f"{modality_name(modality)} as a UTF-8 .txt file (or paste below)",
        key=f"upload_{modality}",
        on_change=_on_text_upload,
        args=(modality,),
    )
    _show_message(modality)
    st.text_area(
        modality_name(modality),
        key=_text_key(modality),
        height=220,
        on_change=_touch,
        placeholder="Paste the text here; leave empty if the patient has none.",
    )


def availability_summary(info: ModelInfo) -> str:
    present_names, absent_names = [], []
    for modality in info.modalities:
        name, kind = modality.name, modality.kind
        if kind is ModalityKind.IMAGE:
            present = name in st.session_state.images
        elif kind is ModalityKind.TEXT:
            present = bool((st.session_state.get(_text_key(name)) or "").strip())
        else:
            present = any(v is not None for f, v in _form_values(info).items())
        (present_names if present else absent_names).append(modality_name(name))
    return f"**{', '.join(present_names) or 'nothing'}**" + (
        f"; missing: {', '.join(absent_names)}" if absent_names else "; nothing missing"
    )


# ------------------------------------------------------------------ actions
def _snapshot(info: ModelInfo):
    """Validated inputs now on the page -> (record, inputs for saving); raises InputError(s)."""
    state = st.session_state
    structured = parse_structured_form(_form_values(info), info.features)
    texts = {}
    for modality in info.modalities:
        if modality.kind is ModalityKind.TEXT:
            raw = state.get(_text_key(modality.name)) or ""
            if raw.strip():
                texts[modality.name] = read_text_upload(modality_name(modality.name), raw, TEXT_LIMIT_CHARS)
    images = dict(state.images)
    label = (state.get("patient_label") or "").strip() or "unnamed patient"
    register_sensitive(label, words=True)
    register_sensitive(*texts.values(), *(u.filename for u in images.values()))
    record = build_record(label, structured, images, texts, info.modalities)
    return record, structured, images, texts


def _progress_runner(status, steps: list[str]):
    bar = st.progress(0.0)
    done = []

    def progress(step: str) -> None:
        done.append(step)
        label = STEP_LABELS.get(step, f"Attributions within the {modality_name(step).lower()}")
        status.write(f"{len(done)}/{len(steps)} {label}...")
        bar.progress(min(1.0, (len(done) - 1) / max(1, len(steps))), text=label)

    return progress, bar


def _available(record: PatientRecord, info: ModelInfo) -> list[str]:
    available = record.availability(info.modalities, info.features)
    return [m.name for m, a in zip(info.modalities, available) if a]


def _first_pass(record: PatientRecord, info: ModelInfo) -> list[str] | None:
    """The modalities attributed first (all but the notes, whose transformer attributions take seconds): the
    page shows risks and the rest at once, the notes follow (in-process or from the model server). None = all."""
    kinds = {m.name: m.kind for m in info.modalities}
    available = _available(record, info)
    if not any(kinds[m] is ModalityKind.TEXT for m in available):
        return None
    return [m for m in available if kinds[m] is not ModalityKind.TEXT]


def _run(
    svc: ModelService, record: PatientRecord, task: str, info: ModelInfo, modalities: list[str] | None = None
) -> Explanation:
    steps = ["encode", "predict", "what_if", *(modalities if modalities is not None else _available(record, info))]
    label = "every outcome" if task == ALL_TASKS else task_name(task).lower()
    with st.status(f"Analysing for {label}...", expanded=True) as status:
        progress, bar = _progress_runner(status, steps)
        started = time.perf_counter()
        explanation = svc.analyse(record, task, progress, modalities=modalities)
        bar.progress(1.0, text="Done")
        status.update(label=f"Analysed in {time.perf_counter() - started:.1f} s", state="complete", expanded=False)
    return explanation


def finish_pending(svc: ModelService, analysis: dict) -> None:
    """Attributes the notes of a fast first answer (shown meanwhile), then reruns the page; nothing when
    nothing is pending."""
    partial = analysis["explanation"]
    steps = partial.pending()
    if not steps or analysis.get("pending_refused"):  # refused once: not retried on every rerun
        return
    with st.status(
        f"Attributing the words of the {', '.join(modality_name(m).lower() for m in steps)}...", expanded=True
    ) as status:
        progress, bar = _progress_runner(status, ["encode", "predict", *steps])
        try:
            complete = svc.complete(partial, analysis["record"], ALL_TASKS, progress)
        except (RemoteServiceError, AnalysisRefused) as error:  # the first answer stays on the page
            status.update(label=f"The words were not attributed: {plain(error)}", state="error")
            analysis["pending_refused"] = True
            return
        analysis["explanation"] = complete
        bar.progress(1.0, text="Done")
    st.rerun()


def analyse(svc: ModelService, store, user: str) -> None:
    """Every outcome in one run (the notes' phrases follow in `finish_pending`)."""
    info = svc.info
    try:
        record, structured, images, texts = _snapshot(info)
    except (InputError, InputErrors) as error:
        problems = error.errors if isinstance(error, InputErrors) else [error]
        for problem in problems:
            st.error(plain(problem))
        return
    try:
        explanation = _run(svc, record, ALL_TASKS, info, _first_pass(record, info))
    except RemoteServiceError as error:  # the model server refused or is down: say so, keep the inputs
        st.error(f"The model server could not analyse this patient: {plain(error)}")
        return
    except AnalysisRefused as error:  # busy or over its time budget: say so, keep the inputs
        st.error(f"The analysis did not complete: {plain(error)}")
        return
    st.session_state.analysis = {
        "record": record,
        "structured": structured.values,
        "structured_notes": list(structured.notes),
        "images": {m: (u.filename, u.media_type) for m, u in images.items()},
        "image_bytes": {m: u.data for m, u in images.items()},
        "texts": texts,
        "explanation": explanation,  # of every outcome
        "input_hash": explanation.input_hash,
        "inputs_version": st.session_state.get("inputs_version", 0),
    }
    store.record(action="analyse", user=user, model_version=info.version, input_hash=explanation.input_hash)
    count_analysed_pattern(store, info, explanation)


def count_analysed_pattern(store, info: ModelInfo, explanation: Explanation) -> None:
    """One more patient with this availability pattern, for the Model card's ordering-policy drift check
    (mmnar_app.store.pattern_counts: the model id and the pattern id only, never who). The same inputs
    analysed again in this browser session are not counted twice. A failure is logged and never stops
    the analysis: the risks matter more than the statistics."""
    from mmnar_app.store import count_pattern

    counted = st.session_state.setdefault("patterns_counted", set())
    if explanation.input_hash in counted:
        return
    try:
        count_pattern(store, info.model_id, int(explanation.prediction.pattern))
    except Exception as error:
        log.error("counting the availability pattern failed: %s", safe_error(error))
        return
    counted.add(explanation.input_hash)


def inputs_changed(analysis: dict) -> bool:
    return st.session_state.get("inputs_version", 0) != analysis["inputs_version"]


def assessment_payload(info: ModelInfo, analysis: dict) -> dict:
    """What a save stores: inputs (files by reference), outputs (every explanation computed), summary."""
    explanation = analysis["explanation"]
    prediction = explanation.prediction
    return {
        "inputs": {
            "structured": analysis["structured"],
            "structured_notes": analysis["structured_notes"],
            "texts": analysis["texts"],
            "images": {m: {"filename": f, "media_type": t} for m, (f, t) in analysis["images"].items()},
        },
        # keyed by its first outcome, as one explanation per outcome was before (History reads both)
        "outputs": {"explanations": {explanation.tasks[0]: explanation.to_dict()}},
        "files": {m: (f, t, analysis["image_bytes"][m]) for m, (f, t) in analysis["images"].items()},
        "pattern": "+".join(prediction.available),
        "summary": {r.task: r.risk for r in prediction.risks},
    }


def save_panel(info: ModelInfo, store, user: str, analysis: dict) -> None:
    st.subheader("Save this assessment")
    note = st.text_area("Note (optional)", key="save_note", height=80)
    if st.button("Save assessment", key="save"):
        payload = assessment_payload(info, analysis)
        label = (st.session_state.get("patient_label") or "").strip() or "unnamed patient"
        register_sensitive(label, words=True)
        register_sensitive(note)
        try:
            assessment_id = store.save_assessment(
                user=user,
                patient_label=label,
                model_id=info.model_id,
                model_version=info.version,
                input_hash=analysis["input_hash"],
                note=note,
                **payload,
            )
        except Exception as error:  # nothing was saved: the store saves in one transaction
            # never the raw message: a database error quotes the statement's parameters (label, note, inputs)
            log.error("saving an assessment failed: %s", safe_error(error))
            st.error(
                f"The assessment was not saved ({safe_error(error)}). Nothing was written; your inputs are still here."
            )
            return
        st.session_state.last_saved = assessment_id
        st.success(
            f"Saved as assessment #{assessment_id} ({', '.join(task_name(t) for t in analysis['explanation'].tasks)}). "
            "Find it on the History page."
        )
