"""Tiny real encoders for the encoder tests: a one-layer random BERT with MiniLM's tokenizer and a 32-pixel
image backbone; a new seed is a new encoder."""

import torch

from mmnar_core.encoders.config import ImageEncoderConfig, TextEncoderConfig
from mmnar_core.encoders.image_backbone import ImageEmbedder, ImageEncoder
from mmnar_core.encoders.text_encoder import TextEmbedder, default_model_path

TINY_IMAGE = ImageEncoderConfig(input_size=32, embed_dim=8)


def tiny_text(seed: int) -> TextEmbedder:
    """A one-layer random BERT with MiniLM's tokenizer: fast, and a new seed is a new encoder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(default_model_path(), local_files_only=True)
    torch.manual_seed(seed)
    model = BertModel(
        BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        )
    )
    return TextEmbedder(TextEncoderConfig(window_tokens=64, overlap_tokens=8), tokenizer=tokenizer, model=model.eval())


def tiny_image(seed: int) -> ImageEmbedder:
    torch.manual_seed(seed)
    return ImageEmbedder(ImageEncoder(TINY_IMAGE), batch_size=2)
