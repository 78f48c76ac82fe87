"""Encoder benchmarks for `python -m mmnar_core bench encoders`: images/s, notes/s (~2,000 and ~8,000
characters), batch and single item, one patient from raw inputs to embeddings (target: p50 <= 150 ms on
a 2-core CPU), load times and peak memory. Inputs are generated here, so the figures need no data."""

from __future__ import annotations

import io
import os
import resource
import statistics
import threading
import time

import numpy as np

from mmnar_lab.dicom import dicom_bytes

SENTENCES = (
    "The patient was admitted with progressive dyspnea on exertion and bilateral lower extremity edema.",
    "Chest radiograph showed a small right pleural effusion without focal consolidation.",
    "He was diuresed with intravenous furosemide with improvement in his oxygen requirement.",
    "Blood cultures remained negative and antibiotics were discontinued on hospital day three.",
    "Creatinine peaked at 1.8 and returned to baseline of 1.1 prior to discharge.",
    "Transthoracic echocardiogram demonstrated an ejection fraction of 35% with moderate mitral regurgitation.",
    "She denies chest pain, palpitations, fevers or chills; no sick contacts.",
    "Home metoprolol was held for hypotension and restarted at a reduced dose.",
    "Physical therapy evaluated the patient and recommended discharge home with services.",
    "No evidence of pneumothorax. Cardiomediastinal silhouette is mildly enlarged.",
)


def synthetic_note(chars: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < chars:
        sentence = SENTENCES[int(rng.integers(len(SENTENCES)))]
        parts.append(sentence)
        total += len(sentence) + 1
    return " ".join(parts)[:chars]


def synthetic_png(size: int = 224, seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = 0.6 * np.exp(-((x - 0.3) ** 2 + (y - 0.5) ** 2) / 0.05) + 0.6 * np.exp(
        -((x - 0.7) ** 2 + (y - 0.5) ** 2) / 0.05
    )
    image = np.clip(image + rng.normal(0, 0.05, image.shape), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray((image * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def synthetic_dicom(size: int = 2048, seed: int = 0) -> bytes:
    """A 16-bit (12 stored) MONOCHROME1 DICOM of a typical CXR size."""
    pixels = np.random.default_rng(seed).integers(0, 4096, (size, size))
    return dicom_bytes(pixels, "MONOCHROME1", bits_stored=12, WindowCenter=2048, WindowWidth=4096)


class PeakRSS:
    """Samples the resident set size every 5 ms; ru_maxrss alone would include earlier work."""

    def __enter__(self):
        import psutil

        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _p50_ms(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def _rate(function, items: int, repeats: int = 3) -> float:
    """Items per second, median of `repeats` timed runs after a warm-up (robust to a busy neighbour)."""
    function()  # warm-up (allocator, oneDNN kernels for this shape)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        rates.append(items / (time.perf_counter() - started))
    return round(statistics.median(rates), 1)


def bench_encoders(repeats: int = 15) -> dict:
    import torch

    from mmnar_core.encoders.command import SHIPPED_IMAGE_WEIGHTS
    from mmnar_core.encoders.image_backbone import ImageEmbedder, ImageEncoder, load_image_encoder
    from mmnar_core.encoders.patient import PatientEncoder
    from mmnar_core.encoders.text_encoder import TextEmbedder
    from mmnar_core.schema import MIMIC_STYLE_MODALITIES, PatientRecord

    figures: dict = {
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
        "load_avg_1min_at_start": round(os.getloadavg()[0], 2),
    }
    with PeakRSS() as memory:
        started = time.perf_counter()
        if SHIPPED_IMAGE_WEIGHTS.is_file():
            encoder = load_image_encoder(SHIPPED_IMAGE_WEIGHTS)
            figures["image_weights"] = SHIPPED_IMAGE_WEIGHTS.name
        else:
            torch.manual_seed(0)
            encoder = ImageEncoder()
            figures["image_weights"] = "random init (shipped weights missing)"
        image = ImageEmbedder(encoder, batch_size=32)
        figures["image_arch"] = f"{encoder.config.arch}@{encoder.config.input_size}px"
        figures["image_load_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        text = TextEmbedder()
        figures["text_load_s"] = round(time.perf_counter() - started, 2)

        pngs = [synthetic_png(224, seed) for seed in range(64)]
        figures["images_per_s_batch_png224"] = _rate(lambda: image.embed(pngs), len(pngs))
        figures["image_ms_single_png224_p50"] = _p50_ms(lambda: image.embed(pngs[:1]), repeats)
        dicoms = [synthetic_dicom(2048, seed) for seed in range(4)]
        figures["images_per_s_batch_dicom2048"] = _rate(lambda: image.embed(dicoms), len(dicoms))
        figures["image_ms_single_dicom2048_p50"] = _p50_ms(lambda: image.embed(dicoms[:1]), 5)

        for chars in (2000, 8000):
            notes = [synthetic_note(chars, seed) for seed in range(16)]
            tokens = text.windower(notes[:1]).n_tokens[0]
            figures[f"note{chars}_tokens"] = tokens
            figures[f"notes_per_s_batch_{chars}chars"] = _rate(lambda: text.embed(notes), len(notes))  # noqa: B023
            figures[f"note_ms_single_{chars}chars_p50"] = _p50_ms(lambda: text.embed(notes[:1]), max(5, repeats // 2))  # noqa: B023

        patient = PatientEncoder(MIMIC_STYLE_MODALITIES, image=image, text=text)
        report = synthetic_note(600, 99)
        for chars in (2000, 8000):
            record = PatientRecord(
                "bench",
                images={"cxr": pngs[0]},
                texts={"discharge_note": synthetic_note(chars, 7), "radiology_report": report},
            )
            assert set(patient.encode(record)) == {"cxr", "discharge_note", "radiology_report"}
            figures[f"patient_ms_p50_cxr_png_report600_discharge{chars}"] = _p50_ms(
                lambda: patient.encode(record),  # noqa: B023
                repeats,
            )
    figures["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    figures["peak_rss_mb"] = round(memory.peak / 2**20, 1)
    figures["process_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return figures
