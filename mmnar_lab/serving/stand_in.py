"""A stand-in predictor for the model server's mechanics (admission, work limits, cancellation, timeouts),
used by the tests and by the attack replay (mmnar_lab.serving.attack) while no trained bundle loads:
one numeric feature, an image and a note modality, one task. `predict` takes `predict_s`; `explain` does
`steps` slices of work, each ending in check_cancelled() as the real attribution passes do (RiskHead and
the forwards inside Captum's internal batches), and records how far it got."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from mmnar_core.cancel import check_cancelled
from mmnar_core.schema import FeatureKind, FeatureSpec, ModalityKind, ModalitySpec


class Answer:
    def __init__(self, record, kind):
        self.record, self.kind = record, kind

    def to_dict(self) -> dict:
        return {"patient_id": self.record.patient_id, "kind": self.kind, "risks": [{"task": "icu_90d", "risk": 0.5}]}


class StubPredictor:
    features = [FeatureSpec("age", FeatureKind.NUMERIC, "structured", "years", valid_range=(0.0, 120.0))]
    modalities = [
        ModalitySpec("structured", ModalityKind.TABULAR),
        ModalitySpec("cxr", ModalityKind.IMAGE),
        ModalitySpec("discharge_note", ModalityKind.TEXT),
    ]
    config = SimpleNamespace(tasks=["icu_90d"], modalities=["structured", "cxr", "discharge_note"])

    def __init__(self, steps: int = 2000, step_s: float = 0.01, predict_s: float = 0.0):
        self.steps, self.step_s = steps, step_s
        self.predict_s = predict_s  # a prediction's time (the server measures its rate of work from it)
        self.progress: list[int] = []  # per explain call: the last step reached
        self.finished = threading.Event()  # set when an explain call ends, however it ends

    def encode(self, record, digest=None):
        return {}

    def predict(self, record, vectors=None):
        time.sleep(self.predict_s)
        return Answer(record, "predict")

    def what_if(self, record, vectors=None):
        return Answer(record, "what_if")

    def describe_model(self):
        return fake_info(self)

    def explain(self, record, tasks=None, digest=None, modalities=None, **_):
        self.progress.append(0)
        try:
            for step in range(self.steps):
                check_cancelled()
                time.sleep(self.step_s)
                self.progress[-1] = step + 1
            return Answer(record, "explain")
        finally:
            self.finished.set()


def fake_info(predictor):
    return SimpleNamespace(model_id="stub-model", device="cpu", to_dict=lambda: {"model_id": "stub-model"})


def stub_app(monkeypatch=None, config=None, predictor=None):
    """(app, predictor): create_app over a StubPredictor, which describes itself (it has no bundle), so
    nothing global is replaced; `monkeypatch` is accepted for the callers that pass it."""
    from mmnar_core.serving import ServeConfig, create_app

    predictor = predictor or StubPredictor()
    return create_app(predictor, config or ServeConfig()), predictor
