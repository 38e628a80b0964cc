"""A character-level language model: the corpus, a vocabulary, a causal Transformer, decoding.

Lecture 1, part III ("Autoregressive models", language models): p(w) = prod_t p(w_t | w_<t)
over characters, learned by a tiny decoder-only Transformer with teacher forcing, and
sampled with Algorithm 6 plus the decoding heuristics of :mod:`coursekit.autoregressive`
(temperature, top-k, nucleus).

- :func:`load_corpus` reads the package's own corpus (``coursekit/corpus/book_text.txt``,
  package data read with :mod:`importlib.resources`, so it ships with ``pip install``);
  :func:`load_book_text` prefers the book's Markdown pages when they are present;
- :class:`CharVocab`, :class:`CharTransformer`, :func:`text_windows`,
  :func:`sequence_log_prob` and :func:`generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from coursekit.autoregressive import sample_logits
from coursekit.validation import GeneratorLike, as_generator, check_positive_int

__all__ = [
    "BOOK_TEXT_FILES",
    "CharTransformer",
    "CharVocab",
    "generate",
    "load_book_text",
    "load_corpus",
    "sequence_log_prob",
    "text_windows",
]

#: The book's own Markdown pages, relative to the folder ``book/`` (the text the LM learns).
BOOK_TEXT_FILES = ("index.md", "course/outline.md", "course/project.md")

#: The package resource holding the corpus used when the book's pages are absent (Colab).
CORPUS = "corpus/book_text.txt"


def load_corpus() -> str:
    """The corpus shipped with coursekit: a short text about the course (about 9 000 chars)."""
    return resources.files("coursekit").joinpath(CORPUS).read_text(encoding="utf-8")


def load_book_text(book_dir: str | Path | None = "..") -> str:
    """The text the character model learns: the book's own pages, or the packaged corpus.

    Args:
        book_dir: the folder ``book/`` of the repository (from a chapter notebook, ``".."``);
            None, or a folder without the pages (e.g. on Colab): :func:`load_corpus`.

    Returns:
        the concatenated pages (one blank line between them).
    """
    if book_dir is not None:
        if not isinstance(book_dir, (str, Path)):
            raise TypeError(f"book_dir: expected a path or None, got {type(book_dir).__name__}")
        paths = [Path(book_dir) / f for f in BOOK_TEXT_FILES]
        if all(p.is_file() for p in paths):
            return "\n\n".join(p.read_text(encoding="utf-8") for p in paths)
    return load_corpus()


def _check_index(idx: object, name: str, model: CharTransformer) -> torch.Tensor:
    """Token indices for the model: integer, within the vocabulary, on the model's device."""
    if not isinstance(idx, torch.Tensor):
        arr = np.asarray(idx)
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name}: expected integer token indices, got dtype {arr.dtype}")
        idx = torch.from_numpy(arr)
    if idx.is_floating_point() or idx.dtype == torch.bool or idx.is_complex():
        raise TypeError(f"{name}: expected integer token indices, got dtype {idx.dtype}")
    if idx.numel() and (idx.min() < 0 or idx.max() >= model.vocab_size):
        raise ValueError(f"{name}: token indices must lie in 0..{model.vocab_size - 1}")
    return idx.long().to(model.head.weight.device)


def _check_tokens(tokens: object, name: str, min_len: int) -> torch.Tensor:
    """A 1-D int64 tensor of token indices (NumPy arrays and lists accepted)."""
    if not isinstance(tokens, torch.Tensor):
        arr = np.asarray(tokens)
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name}: expected integer token indices, got dtype {arr.dtype}")
        tokens = torch.from_numpy(arr)
    if tokens.is_floating_point() or tokens.dtype == torch.bool or tokens.is_complex():
        raise TypeError(f"{name}: expected integer token indices, got dtype {tokens.dtype}")
    if tokens.ndim != 1 or tokens.shape[0] < min_len:
        raise ValueError(
            f"{name}: expected a 1-D tensor of at least {min_len} tokens, got shape "
            f"{tuple(tokens.shape)}"
        )
    return tokens.long()


class CharVocab:
    """A character vocabulary: the sorted set of characters of a text, with encode / decode."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise ValueError("text: expected a non-empty string")
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """str of length T -> (T,) int64 token indices."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"text: characters not in the vocabulary: {unknown!r}")
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, tokens: torch.Tensor | Sequence[int]) -> str:
        """(T,) token indices -> str."""
        t = _check_tokens(tokens, "tokens", 0)
        if t.numel() and (t.min() < 0 or t.max() >= len(self.chars)):
            raise ValueError(f"tokens: indices must lie in 0..{len(self.chars) - 1}")
        return "".join(self.chars[int(i)] for i in t)


class CharTransformer(nn.Module):
    """A tiny decoder-only Transformer (Vaswani et al., 2017) with a causal mask.

    logits[:, t] parametrises p(w_{t+1} | w_{<=t}): position t attends to positions <= t
    only, so one forward pass gives every next-token distribution of a sequence at once
    (teacher forcing).

    Args:
        vocab_size: number of tokens.  context: longest sequence it reads.
        d_model, n_heads, n_layers: width, attention heads and depth.
    """

    def __init__(self, vocab_size: int, context: int = 64, d_model: int = 64,
                 n_heads: int = 4, n_layers: int = 2) -> None:
        super().__init__()
        self.vocab_size = check_positive_int(vocab_size, "vocab_size")
        self.context = check_positive_int(context, "context")
        d_model = check_positive_int(d_model, "d_model")
        n_heads = check_positive_int(n_heads, "n_heads")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(self.context, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, check_positive_int(n_layers, "n_layers"),
                                            enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: (n, T) int64 with T <= context  ->  (n, T, vocab_size) next-token logits."""
        idx = _check_index(idx, "idx", self)
        if idx.ndim != 2 or idx.shape[0] == 0 or idx.shape[1] > self.context or idx.shape[1] == 0:
            raise ValueError(f"idx: expected shape (n, T) with 1 <= T <= {self.context}, "
                             f"got {tuple(idx.shape)}")
        T = idx.shape[1]
        h = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))
        # -inf above the diagonal: position t cannot attend to any s > t
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=idx.device)
        h = self.blocks(h, mask=mask, is_causal=True)
        return self.head(self.norm(h))

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing cross-entropy (nats per token) of a (n, T+1) batch of windows."""
        batch = _check_index(batch, "batch", self)
        if batch.ndim != 2 or batch.shape[1] < 2 or batch.shape[0] == 0:
            raise ValueError(f"batch: expected windows of shape (n, T + 1) with T >= 1, "
                             f"got {tuple(batch.shape)}")
        logits = self(batch[:, :-1])
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), batch[:, 1:].reshape(-1))


def text_windows(tokens: torch.Tensor, length: int) -> torch.Tensor:
    """All overlapping windows of ``length`` tokens: (T,) -> (T - length + 1, length)."""
    length = check_positive_int(length, "length")
    tokens = _check_tokens(tokens, "tokens", length)
    return tokens.unfold(0, length, 1)


@torch.no_grad()
def sequence_log_prob(model: CharTransformer, tokens: torch.Tensor,
                      batch_size: int = 256) -> torch.Tensor:
    """log p(w_t | w_<t) for t = 2..T of one long sequence (nats), each token conditioned on
    the (up to) ``model.context`` tokens before it: exactly what :func:`generate` uses.

    Args:
        tokens: (T,) int64.

    Returns:
        (T - 1,) log-probabilities of tokens 2..T.
    """
    if not isinstance(model, CharTransformer):
        raise TypeError(f"model: expected a CharTransformer, got {type(model).__name__}")
    tokens = _check_tokens(tokens, "tokens", 2).to(next(model.parameters()).device)
    batch_size = check_positive_int(batch_size, "batch_size")
    model.eval()
    C = min(model.context, tokens.shape[0] - 1)
    # the first window predicts targets 1..C from prefixes of lengths 1..C (teacher forcing)
    logp = torch.log_softmax(model(tokens[None, :C])[0], dim=-1)
    parts = [logp.gather(1, tokens[1 : C + 1, None])[:, 0]]
    # every later target j sees exactly the C tokens before it: the last position of a window
    targets = tokens[C + 1 :]
    if targets.numel() == 0:
        return parts[0]
    windows = text_windows(tokens[1:-1], C)  # window k = tokens[k+1 : k+1+C] predicts k+1+C
    for s in range(0, windows.shape[0], batch_size):
        logits = model(windows[s : s + batch_size])[:, -1]
        lp = torch.log_softmax(logits, dim=-1)
        parts.append(lp.gather(1, targets[s : s + batch_size, None])[:, 0])
    return torch.cat(parts)


@torch.no_grad()
def generate(
    model: CharTransformer,
    vocab: CharVocab,
    prompt: str,
    n_new: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: GeneratorLike = None,
) -> str:
    """Continue ``prompt`` by ``n_new`` characters with Algorithm 6 (one token per pass).

    Args:
        greedy: take the argmax at every step instead of sampling (the T -> 0 limit).
        temperature, top_k, top_p: as in :func:`coursekit.autoregressive.sample_logits`.
        generator: a ``torch.Generator``, an int seed or None (a seed drawn from torch's
            global state); the tokens are drawn on the model's device.

    Returns:
        the prompt followed by the ``n_new`` generated characters.
    """
    if not isinstance(model, CharTransformer):
        raise TypeError(f"model: expected a CharTransformer, got {type(model).__name__}")
    if not isinstance(vocab, CharVocab):
        raise TypeError(f"vocab: expected a CharVocab, got {type(vocab).__name__}")
    n_new = check_positive_int(n_new, "n_new", minimum=0)
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("prompt: expected a string of at least one character")
    if len(vocab) != model.vocab_size:
        raise ValueError(f"vocab: {len(vocab)} characters but the model has "
                         f"vocab_size = {model.vocab_size}")
    device = next(model.parameters()).device
    generator = as_generator(generator, "generator", device=device)
    model.eval()
    idx = vocab.encode(prompt).to(device)
    for _ in range(n_new):
        logits = model(idx[-model.context:][None])[0, -1]  # (V,): p(w_{t+1} | last context tokens)
        if greedy:
            nxt = logits.argmax()
        else:
            nxt = sample_logits(logits, temperature, top_k, top_p, generator=generator)
        idx = torch.cat([idx, nxt.reshape(1)])
    return vocab.decode(idx)
