"""The reference X-ray: the pixel-wise median of training X-rays in model-input space, saved in the bundle
as the Integrated Gradients baseline of each image modality.

Why not a black image: IG against black credits every bright pixel in proportion to its brightness, so
the heart, spine and mediastinum dominate every map whatever the patient has (on the synthetic cohort the
IG peak fell inside an opacity or effusion for 16 % of ICU explanations). Against a typical X-ray the
attribution is about where *this* image differs from the usual one, as the structured baseline (the
training-median patient) is for the EHR: the peak then lands in the finding (docs/explanations.md).

Training patients only, at most `max_images` of them chosen at random with a fixed seed, decoded with the
encoder's own limits and preprocessing (pad to square, resize, normalise), so the median lives exactly
where IG interpolates. Built here, at training; the bundle loads it (`Bundle.reference_images`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mmnar_core.bundle import REFERENCE_IMAGE_FILE

MAX_IMAGES = 500


def median_image(
    dataset, modality: str, encoder_config: dict, max_images: int = MAX_IMAGES, seed: int = 0
) -> torch.Tensor | None:
    """(1, 1, S, S) pixel-wise median of up to `max_images` training images of `modality` after the
    encoder's preprocessing; None when no training patient has one."""
    from mmnar_core.encoders.config import ImageEncoderConfig
    from mmnar_core.encoders.image_io import load_image
    from mmnar_core.encoders.image_preprocess import ImagePreprocess, to_model_input

    config = ImageEncoderConfig.from_dict(encoder_config)
    preprocess = ImagePreprocess(config)
    images = dataset.images
    train = set(dataset.patients.loc[dataset.patients["split"] == "train", "patient_id"])
    rows = images[(images["modality"] == modality) & images["patient_id"].isin(train)]
    rows = rows.drop_duplicates("patient_id")  # each patient's first image, as Dataset.record takes it
    if rows.empty:
        return None
    if len(rows) > max_images:
        rows = rows.iloc[np.sort(np.random.default_rng(seed).choice(len(rows), max_images, replace=False))]
    root = Path(dataset.root)
    with torch.no_grad():
        batch = torch.cat(
            [
                to_model_input([load_image(root / path, config.max_bytes, config.max_pixels)], preprocess)
                for path in rows["path"]
            ]
        )
    return batch.median(dim=0, keepdim=True).values.contiguous()


def reference_image_file(
    dataset, image_encoders: dict[str, dict], max_images: int = MAX_IMAGES, seed: int = 0
) -> dict[str, bytes]:
    """{REFERENCE_IMAGE_FILE: safetensors bytes} with one tensor per image modality (key = modality name),
    or {} when the dataset has no training images. `image_encoders`: modality -> encoder config dict."""
    from safetensors.torch import save

    tensors = {}
    for modality, config in image_encoders.items():
        median = median_image(dataset, modality, config, max_images, seed)
        if median is not None:
            tensors[modality] = median.to(torch.float32)
    return {REFERENCE_IMAGE_FILE: save(tensors)} if tensors else {}


def image_encoder_configs(encoders: dict, encoder_folder) -> dict[str, dict]:
    """modality -> image encoder config, read from each encoder's encoder.json in `encoder_folder(encoder_id)`."""
    configs = {}
    for modality, info in encoders.items():
        if info.get("kind") == "image":
            path = Path(encoder_folder(info["encoder_id"])) / "encoder.json"
            configs[modality] = json.loads(path.read_text(encoding="utf-8"))["config"]
    return configs
