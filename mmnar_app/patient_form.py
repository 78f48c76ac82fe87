"""The patient page's inputs and actions.

One patient at a time (issue 17): loading a patient (demo, new, or a structured file) is one state
transition in one callback, and every input widget's key carries the generation of the patient being
edited (`widget_key`: `g<generation>_feat_<feature>`, `g<generation>_text_<modality>`, the uploaders and
the label), so a browser that still shows the previous patient's form cannot write its values into the new
one: a stale widget value arrives under the old generation's key and is dropped, and the uploaders start
empty. Images live in `state.images`, set only by a load or by an upload of the current generation.

Uploads are validated by `mmnar_core.inputs` and only then applied, so a bad upload changes nothing and
every valid field stays filled. The analysis keeps the hash of the inputs it analysed; Save is refused when
the inputs on screen hash differently, and the saved record is read back and checked against that hash."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import streamlit as st

from mmnar_app import completion
from mmnar_app.demo_patients import load_demo_patients
from mmnar_app.display import modality_name, task_name
from mmnar_app.logging_setup import (
    get_logger,
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
from mmnar_core.inputs.units import accepted_units, unit_class
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


def widget_key(name: str, gen: int | None = None) -> str:
    """The key of an input widget of the patient being edited (generation `gen`, default the current one):
    a new generation is a new widget, so nothing of the previous patient's form can reach it."""
    if gen is None:
        gen = st.session_state.get("patient_gen", 0)
    return f"g{gen}_{name}"


def _feature_key(name: str, gen: int | None = None) -> str:
    return widget_key(f"feat_{name}", gen)


def _text_key(name: str, gen: int | None = None) -> str:
    return widget_key(f"text_{name}", gen)


def _current(gen: int) -> bool:
    """Whether a widget event belongs to the patient being edited (an event from the form of a patient
    switched away from, still on the user's screen for a moment, is dropped)."""
    return gen == st.session_state.get("patient_gen", 0)


def init_state(info: ModelInfo) -> None:
    state = st.session_state
    if "images" not in state:
        state.images = {}
        state.messages = {}
        state.patient_gen = 0
        state.patient_choice = patient_choices()[0]
        load_choice(info)


def _touch(gen: int | None = None, feature: str | None = None) -> None:
    """An input changed: the analysis on screen no longer matches the page (cheaper than re-hashing the
    inputs on every rerun), and the field's own error, if any, has lost its cause. Ignored for a previous
    patient's widget."""
    state = st.session_state
    if gen is not None and not _current(gen):
        return
    state.inputs_version = state.get("inputs_version", 0) + 1
    if feature is not None:
        state.setdefault("field_errors", {}).pop(feature, None)


def input_value(name: str, default=None):
    """The value of input `name` (`feat_age`, `unit_age`, `text_discharge_note`, `patient_label`) of the
    patient being edited: its widget's, or the value it was loaded with before its widget was drawn."""
    state = st.session_state
    key = widget_key(name)
    if key in state:
        return state[key]
    return state.get("form_values", {}).get(name, default)


def _new_generation(values: dict, keep: bool) -> None:
    """One state transition: the inputs of a new generation of widgets (`values`: base name such as
    `feat_age` -> value, over the current generation's inputs when `keep`), then the generation switched
    over. The values are kept apart from the widgets (`form_values`) and given to each new widget as its
    default, never preset in its session state: a preset reaches the browser only in the run that sets it,
    and a click interrupting that run left the fields not drawn yet empty in the browser (and then here)."""
    state = st.session_state
    fresh = {name: input_value(name) for name in state.get("form_values", {})} if keep else {}
    fresh.update(values)
    state.form_values = fresh
    state.patient_gen = state.get("patient_gen", 0) + 1
    _touch()


def load_choice(info: ModelInfo) -> None:
    """Load the chosen demo patient, or an empty form for a new patient, as one state transition: every
    field, note, image and the label in a new generation of widgets (so the uploaders start empty), the
    previous patient's messages and analysis dropped."""
    state = st.session_state
    demo = _demos().get(state.patient_choice)
    values = demo.structured if demo else {}
    fresh: dict = {}
    for feature in info.features:
        value = values.get(feature.name)
        if feature.kind is FeatureKind.CATEGORICAL:
            value = value if value in (feature.categories or ()) else NOT_RECORDED
        elif value is not None:
            value = float(value)
        fresh[f"feat_{feature.name}"] = value
        if unit_choices(feature):
            fresh[f"unit_{feature.name}"] = feature.unit
    images = {}
    for modality in info.modalities:
        if modality.kind is ModalityKind.IMAGE and demo and modality.name in demo.images:
            images[modality.name] = read_image_upload(
                f"{demo.key}_{modality.name}.png", demo.images[modality.name], IMAGE_LIMIT_MB * 2**20
            )
        if modality.kind is ModalityKind.TEXT:
            fresh[f"text_{modality.name}"] = demo.texts.get(modality.name, "") if demo else ""
    fresh["patient_label"] = demo.label.split(":")[0] if demo else ""
    state.images = images
    state.messages = {}
    state.field_errors = {}
    drop_analysis()
    _new_generation(fresh, keep=False)


def patient_label() -> str:
    """The label typed for this assessment (not a model input), or "unnamed patient"."""
    return (input_value("patient_label") or "").strip() or "unnamed patient"


def label_input(column=st) -> None:
    column.text_input(
        "Label for this assessment",
        value=input_value("patient_label", ""),
        key=widget_key("patient_label"),
        help="Free text shown in the history (e.g. a pseudonym or bed number); not used by the model.",
    )


# ------------------------------------------------------------------ structured
def _form_values(info: ModelInfo) -> dict:
    """{feature: value} as typed; a value in another unit chosen beside its field as "101.3 °F", which the
    parser converts (with a note) and range-checks in the model's unit."""
    out = {}
    for feature in info.features:
        value = input_value(f"feat_{feature.name}")
        unit = input_value(f"unit_{feature.name}")
        if value is not None and unit and feature.unit and unit != feature.unit:
            value = f"{value!r} {unit}"
        out[feature.name] = None if value == NOT_RECORDED else value
    return out


def _apply_structured(parsed, info: ModelInfo) -> None:
    """The file's values (in the model's units) over the form, as a new generation (a click racing the
    upload cannot undo it); the unit lists and errors of the fields it filled go with their old values."""
    values = {}
    units = {f.name: f.unit for f in info.features if unit_choices(f)}
    for name, value in parsed.values.items():
        values[f"feat_{name}"] = value if isinstance(value, str) or value is None else float(value)
        if name in units:
            values[f"unit_{name}"] = units[name]
        st.session_state.setdefault("field_errors", {}).pop(name, None)
    _new_generation(values, keep=True)


def _on_structured_upload(info: ModelInfo, gen: int) -> None:
    state = st.session_state
    upload = state.get(widget_key("structured_upload", gen))
    if upload is None or not _current(gen):
        return
    data = upload.getvalue()
    register_sensitive(upload.name)
    if len(data) <= STRUCTURED_LIMIT_MB * 2**20:
        register_fhir_identifiers(data)
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
        # shown as it is to the user who uploaded the file, on their own screen (redaction is for the logs, which
        # know the file's identifiers from register_fhir_identifiers)
        state.messages["structured"] = ("error", str(error))
        return
    _apply_structured(parsed, info)
    notes = "; ".join(parsed.notes)
    state.messages["structured"] = (
        "success",
        f"Read {upload.name} ({parsed.source}): {sum(v is not None for v in parsed.values.values())} values filled "
        "in below." + (f" {notes}" if notes else ""),
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
        key=widget_key("structured_upload"),
        on_change=_on_structured_upload,
        args=(info, st.session_state.patient_gen),
        max_upload_size=STRUCTURED_LIMIT_MB,
    )
    _show_message("structured")
    features = [f for f in info.features if f.modality == modality]
    for start in range(0, len(features), 3):  # row by row, so the Tab key follows the reading order
        for column, feature in zip(st.columns(3), features[start : start + 3]):
            if feature.kind is FeatureKind.CATEGORICAL:
                _category_input(column, feature)
            else:
                _number_input(column, feature)


def unit_choices(feature: FeatureSpec) -> list[str]:
    """The units offered beside a number field: its own and the common alternatives it converts from
    (°C/°F, mg/dL/µmol/L, ...; mmnar_core.inputs.units), or none when it has no alternative."""
    units = [u for u in accepted_units(feature) if unit_class(u) not in ("K", "1")][:3]
    return units if len(units) > 1 else []


def number_label(feature: FeatureSpec) -> str:
    """The field's label: with its unit, unless a unit list sits beside it."""
    return f"{feature.name} ({feature.unit})" if feature.unit and not unit_choices(feature) else feature.name


def _number_input(column, feature: FeatureSpec) -> None:
    gen = st.session_state.patient_gen
    units = unit_choices(feature)
    field, unit_column = column.columns([3, 2], vertical_alignment="bottom") if units else (column, None)
    low, high = feature.valid_range or (None, None)
    unit = f" {feature.unit}" if feature.unit else ""
    hint = f" Plausible range {low:g} to {high:g}{unit}." if low is not None else ""
    field.number_input(
        number_label(feature),
        value=input_value(f"feat_{feature.name}"),
        key=_feature_key(feature.name),
        on_change=_touch,
        args=(gen, feature.name),
        help=f"{feature.description}.{hint} Leave empty if not measured.",
        placeholder="not measured",
    )
    if unit_column is not None:
        unit = input_value(f"unit_{feature.name}")
        unit_column.selectbox(
            f"Unit of {feature.name}",
            units,
            index=units.index(unit) if unit in units else 0,
            key=widget_key(f"unit_{feature.name}"),
            on_change=_touch,
            args=(gen, feature.name),
            label_visibility="collapsed",
            help="The value is converted to the model's unit when analysed.",
        )
    _field_error(column, feature.name)


def _category_input(column, feature: FeatureSpec) -> None:
    """A selectbox of the model's categories; where the model takes unseen values (`accepts_unknown`), also
    a typed or uploaded other value, with a note under it that the model treats it as unknown."""
    gen = st.session_state.patient_gen
    key = _feature_key(feature.name, gen)
    categories = feature.categories or ()
    options = [NOT_RECORDED, *categories]
    current = input_value(f"feat_{feature.name}")
    if not feature.accepts_unknown:
        column.selectbox(
            feature.name,
            options,
            index=options.index(current) if current in options else 0,
            key=key,
            help=feature.description,
            on_change=_touch,
            args=(gen, feature.name),
        )
        _field_error(column, feature.name)
        return
    if isinstance(current, str) and current not in options:
        options.append(current)  # a value read from a file: keep it selectable instead of resetting it
    column.selectbox(
        feature.name,
        options,
        index=options.index(current) if current in options else 0,
        key=key,
        on_change=_touch,
        args=(gen, feature.name),
        accept_new_options=True,
        help=f"{feature.description}. Another value may be typed: the model treats it as unknown.",
    )
    value = st.session_state.get(key, current)
    if isinstance(value, str) and value != NOT_RECORDED and value not in categories:
        column.caption(f"{value!r} is not a category the model was trained on; treated as unknown")
    _field_error(column, feature.name)


def _field_error(column, feature: str) -> None:
    """The error of this field from the last Analyse, right under it (until the field is changed)."""
    message = st.session_state.get("field_errors", {}).get(feature)
    if message:
        column.error(plain(message))


def field_message(error: InputError) -> str:
    """An input error as said under its field: the parser's advice to write the unit after the number
    becomes the unit list beside the field."""
    message = str(error)
    if error.unit_advice:
        message = message.replace(error.unit_advice, ", or choose its unit in the list beside the field")
    return message


# ------------------------------------------------------------------ images and notes
def _on_upload(modality: str, gen: int, apply) -> None:
    """Validate the file just uploaded for `modality` with `apply(name, bytes)`, which stores it only when
    valid; the outcome is shown as the modality's message. A previous patient's uploader is ignored."""
    state = st.session_state
    upload = state.get(widget_key(f"upload_{modality}", gen))
    if upload is None or not _current(gen):
        return
    register_sensitive(upload.name)
    try:
        apply(upload.name, upload.getvalue())
        _touch()
        state.messages[modality] = ("success", f"{upload.name} read.")
    except (InputError, InputErrors) as error:
        state.messages[modality] = ("error", str(error))


def _on_image_upload(modality: str, gen: int) -> None:
    def apply(name: str, data: bytes) -> None:
        st.session_state.images[modality] = read_image_upload(name, data, IMAGE_LIMIT_MB * 2**20)

    _on_upload(modality, gen, apply)


def _remove_image(modality: str, gen: int) -> None:
    if not _current(gen):
        return
    _touch()
    st.session_state.images.pop(modality, None)
    st.session_state.messages.pop(modality, None)


def image_input(info: ModelInfo, modality: str) -> None:
    gen = st.session_state.patient_gen
    st.file_uploader(
        f"{modality_name(modality)}: PNG, JPEG or DICOM, up to {IMAGE_LIMIT_MB} MB",
        key=widget_key(f"upload_{modality}"),
        on_change=_on_image_upload,
        args=(modality, gen),
        max_upload_size=IMAGE_LIMIT_MB,
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
        alt=f"Preview of the uploaded {modality_name(modality).lower()}: {upload.filename}, "
        f"{upload.width} x {upload.height} px",
    )
    st.button(
        f"Remove {modality_name(modality).lower()}",
        key=widget_key(f"remove_{modality}"),
        on_click=_remove_image,
        args=(modality, gen),
    )


def _on_text_upload(modality: str, gen: int) -> None:
    def apply(name: str, data: bytes) -> None:
        text = read_text_upload(f"{modality_name(modality)} file {name}", data, TEXT_LIMIT_CHARS)
        register_sensitive(text)
        _new_generation({f"text_{modality}": text}, keep=True)  # a click racing the upload cannot undo it

    _on_upload(modality, gen, apply)


def text_input(info: ModelInfo, modality: str) -> None:
    st.file_uploader(
        f"{modality_name(modality)} as a UTF-8 .txt file, up to {TEXT_LIMIT_CHARS:,} characters (or paste below)",
        key=widget_key(f"upload_{modality}"),
        on_change=_on_text_upload,
        args=(modality, st.session_state.patient_gen),
        max_upload_size=1,
    )
    _show_message(modality)
    st.text_area(
        modality_name(modality),
        value=input_value(f"text_{modality}", ""),
        key=_text_key(modality),
        height=220,
        on_change=_touch,
        args=(st.session_state.patient_gen,),
        placeholder="Paste the text here; leave empty if the patient has none.",
    )


def availability_summary(info: ModelInfo) -> str:
    present_names: list[str] = []
    absent_names: list[str] = []
    for modality in info.modalities:
        name, kind = modality.name, modality.kind
        if kind is ModalityKind.IMAGE:
            present = name in st.session_state.images
        elif kind is ModalityKind.TEXT:
            present = bool((input_value(f"text_{name}") or "").strip())
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
            raw = input_value(f"text_{modality.name}") or ""
            if raw.strip():
                texts[modality.name] = read_text_upload(modality_name(modality.name), raw, TEXT_LIMIT_CHARS)
    images = dict(state.images)
    label = patient_label()
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


def _risks_first(svc: ModelService, record: PatientRecord) -> tuple[Explanation, float]:
    """Every outcome's risks, the what-if and each modality's share, no attribution within a modality (a
    fraction of a second: on screen before `finish_pending` attributes); with the seconds it took."""
    with st.status("Analysing for every outcome...", expanded=True) as status:
        progress, bar = _progress_runner(status, ["encode", "predict", "what_if"])
        started = time.perf_counter()
        explanation = svc.analyse(record, ALL_TASKS, progress, modalities=[])
        seconds = time.perf_counter() - started
        bar.progress(1.0, text="Done")
        status.update(label=f"Analysed in {seconds:.1f} s", state="complete", expanded=False)
    return explanation, seconds


def finish_pending(svc: ModelService, analysis: dict) -> None:
    """Attributes within the modalities of the first answer (its risks shown meanwhile), then reruns the
    page; nothing when nothing is pending or the model refused once (`analysis["pending_refused"]`: why,
    shown in place of the attributions)."""
    partial = analysis["explanation"]
    steps = partial.pending()
    if not steps or analysis.get("pending_refused"):  # refused once: not retried on every rerun
        return
    names = ", ".join(modality_name(m).lower() for m in steps)
    with st.status(f"Finding what drives the risks in the {names}...", expanded=True) as status:
        progress, bar = _progress_runner(status, ["encode", "predict", *steps])
        try:
            job = analysis.get("completion")  # started by `analyse` as soon as the risks were known
            if job is None:
                job = analysis["completion"] = completion.start(svc, partial, analysis["record"], ALL_TASKS)
            complete = completion.wait(job, progress)
            analysis.setdefault("seconds", {})["attributions"] = time.perf_counter() - job.started
        except (RemoteServiceError, AnalysisRefused) as error:  # the first answer stays on the page
            # said where the attributions would be, on this and every later run, until Analyse is pressed again
            analysis["pending_refused"] = str(error)
            analysis.pop("completion", None)
            st.rerun()
        analysis["explanation"] = complete
        analysis.pop("completion", None)
        bar.progress(1.0, text="Done")
    st.rerun()


def stop_attributions(analysis: dict | None) -> None:
    """Stop the analysis' attributions if they are still being computed, so they no longer hold the model
    (`finish_pending` starts them again if this analysis stays on screen)."""
    job = analysis.pop("completion", None) if analysis is not None else None
    if job is not None:
        job.stop()


def drop_analysis() -> None:
    """Forget the analysis on screen, stopping its attributions if they are still being computed."""
    stop_attributions(st.session_state.pop("analysis", None))


def timing_line(analysis: dict) -> str:
    """How long this analysis took, in its two parts ('' for an analysis without timings)."""
    seconds = analysis.get("seconds", {})
    if "risks" not in seconds:
        return ""
    line = f"Analysed in {seconds['risks']:.1f} s"
    if "attributions" in seconds:
        line += f", what drives the risks in {seconds['attributions']:.1f} s more"
    return line + "."


def mark_rendered() -> None:
    """The page has shown the whole form of the patient being edited (called at the end of a page run)."""
    st.session_state.rendered_gen = st.session_state.get("patient_gen")


def load_pending() -> bool:
    """Whether a patient was loaded after the form last shown in full: an Analyse click then was aimed at
    what the user saw, not at the patient being loaded, and is not acted on (the controls are inert while
    a load is applied)."""
    state = st.session_state
    return state.get("rendered_gen") != state.get("patient_gen")


def analyse(svc: ModelService, store, user: str) -> None:
    """Every outcome in one run: risks first, the attributions within each modality in `finish_pending`."""
    info = svc.info
    if load_pending():
        st.warning(
            "Another patient was being loaded as **Analyse** was pressed, so nothing was analysed. Check the "
            "inputs below and press **Analyse** again."
        )
        return
    state = st.session_state
    features = {f.name for f in info.features}
    try:
        record, structured, images, texts = _snapshot(info)
    except (InputError, InputErrors) as error:
        # every problem at once: a field's under the field (until it is changed), the others here
        problems = error.errors if isinstance(error, InputErrors) else [error]
        state.field_errors = {p.feature: field_message(p) for p in problems if p.feature in features}
        others = [p for p in problems if p.feature not in features]
        at_fields = f" {len(state.field_errors)} shown under their fields in the form." if state.field_errors else ""
        st.error(
            f"Not analysed: {len(problems)} problem{'s' if len(problems) > 1 else ''} with the inputs.{at_fields}"
            + "".join(f"\n- {plain(p)}" for p in others)
        )
        return
    state.field_errors = {}
    state.messages = {k: m for k, m in state.messages.items() if m[0] != "success"}  # seen, and now analysed
    stop_attributions(state.get("analysis"))  # an earlier analysis' second pass would make this one wait for the model
    try:
        explanation, seconds = _risks_first(svc, record)  # the attributions follow in `finish_pending`
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
        "input_hash": explanation.input_hash,  # what Save checks the screen and the stored record against
        "inputs_version": st.session_state.get("inputs_version", 0),
        "gen": st.session_state.get("patient_gen", 0),
        "choice": st.session_state.get("patient_choice"),
        "seconds": {"risks": seconds},  # shown under the results (the status boxes go with the page's rerun)
    }
    if explanation.pending():  # computed while the page shows the risks; `finish_pending` waits for them
        st.session_state.analysis["completion"] = completion.start(svc, explanation, record, ALL_TASKS)
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
    state = st.session_state
    return state.get("inputs_version", 0) != analysis["inputs_version"] or state.get("patient_gen") != analysis["gen"]


def screen_differences(info: ModelInfo, analysis: dict) -> list[str] | None:
    """The inputs on screen that differ from the analysed ones, by name ([] = none; None when the inputs
    on screen are not valid inputs, which never equal analysed ones)."""
    from mmnar_core.explain.explanation import input_hash

    try:
        record, structured, images, texts = _snapshot(info)
    except (InputError, InputErrors):
        return None
    if input_hash(record) == analysis["input_hash"]:
        return []
    analysed = analysis["structured"]
    out = [name for name, value in structured.values.items() if analysed.get(name) != value]
    out += [
        modality_name(m)
        for m in sorted(set(texts) | set(analysis["texts"]))
        if texts.get(m) != analysis["texts"].get(m)
    ]
    now = {m: u.data for m, u in images.items()}
    out += [
        modality_name(m)
        for m in sorted(set(now) | set(analysis["image_bytes"]))
        if now.get(m) != analysis["image_bytes"].get(m)
    ]
    return out or ["the inputs"]


def save_refusal(info: ModelInfo, analysis: dict, payload: dict) -> str | None:
    """Why this analysis must not be saved now, or None: another patient loaded since, inputs on screen that
    differ from the analysed ones, a payload that is not the analysed inputs, or attributions the model did
    not compute (a saved assessment, its report and its comparison show what drives the risks)."""
    from mmnar_app.input_check import payload_hash

    if analysis.get("gen") != st.session_state.get("patient_gen") or analysis.get("choice") != st.session_state.get(
        "patient_choice"
    ):
        return "another patient was loaded since this analysis. Press **Analyse** for this patient, then save."
    expected = analysis["input_hash"]
    if analysis["explanation"].input_hash != expected or payload_hash(payload) != expected:
        return "the inputs to save are not the analysed ones. Press **Analyse** again, then save."
    pending = analysis["explanation"].pending()
    if pending:
        names = ", ".join(modality_name(m).lower() for m in pending)
        return (
            f"what drives the risks in the {names} was not computed. Press **Analyse** to complete the analysis, "
            "then save."
        )
    differences = screen_differences(info, analysis)
    if differences is None:
        return "the inputs on screen are not valid (see the form). Correct them and press **Analyse**, then save."
    if differences:
        return (
            f"the inputs on screen differ from the analysed ones ({plain(', '.join(differences))} changed since the "
            "analysis). Press **Analyse** to analyse them, then save; or undo the change."
        )
    return None


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


def _verify_saved(store, assessment_id: int, expected: str) -> bool:
    """The saved record read back from the database hashes to the analysed inputs; says so when not."""
    from mmnar_app.input_check import stored_hash

    try:
        ok = stored_hash(store.get_assessment(assessment_id)) == expected
    except Exception as error:  # the store checks each file's SHA-256 on reading
        log.error("reading back assessment %s failed: %s", assessment_id, safe_error(error))
        ok = False
    if not ok:
        log.error("assessment %s does not hold the analysed inputs", assessment_id)
        st.error(
            f"Assessment #{assessment_id} was written, but reading it back did not give the analysed inputs. "
            "Do not rely on it; press **Analyse** and save again."
        )
    return ok


def save_panel(info: ModelInfo, store, user: str, analysis: dict) -> None:
    st.subheader("Save this assessment")
    note = st.text_area("Note (optional)", key="save_note", height=80)
    if st.button("Save assessment", key="save"):
        payload = assessment_payload(info, analysis)
        refusal = save_refusal(info, analysis, payload)
        if refusal:
            st.error(f"Not saved: {refusal}")
            return
        label = patient_label()
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
        if not _verify_saved(store, assessment_id, analysis["input_hash"]):
            return
        st.session_state.last_saved = assessment_id
        st.success(
            f"Saved as assessment #{assessment_id} ({', '.join(task_name(t) for t in analysis['explanation'].tasks)}). "
            "Find it on the History page."
        )


def inputs_summary(info: ModelInfo, analysis: dict) -> str:
    """One line of what was analysed, for the collapsed form: the values given, the files and the notes."""
    values = {k: v for k, v in analysis["structured"].items() if v is not None}
    parts = [f"{len(values)} of {len(info.features)} structured values"]
    for modality in info.modalities:
        name = modality.name
        if modality.kind is ModalityKind.IMAGE and name in analysis["images"]:
            parts.append(f"{modality_name(name)} ({analysis['images'][name][0]})")
        elif modality.kind is ModalityKind.TEXT and name in analysis["texts"]:
            parts.append(f"{modality_name(name)} ({len(analysis['texts'][name]):,} characters)")
        elif modality.kind is not ModalityKind.TABULAR:
            parts.append(f"no {modality_name(name).lower()}")
    return " · ".join(parts)
