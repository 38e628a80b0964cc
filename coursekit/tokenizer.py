"""A tiny byte-pair encoder (BPE): sub-word tokens learned from a text.

Language models do not read characters but *sub-word tokens* (slides: "Tokenization:
subword units (BPE/WordPiece) turn text into discrete tokens"). Byte-pair encoding
(Gage 1994; Sennrich et al. 2016; byte-level as in GPT-2, Radford et al. 2019) learns them
greedily:

1. start from the UTF-8 bytes of the training text (tokens 0..255, so every text can be
   encoded and nothing is ever unknown);
2. repeat ``n_merges`` times: find the most frequent pair of adjacent tokens, give it a new
   id (256, 257, ...) and replace every non-overlapping occurrence, left to right.

Encoding a new text applies the learned merges in the order they were learned; decoding
concatenates the bytes of each token. ``decode(encode(s)) == s`` for every string ``s``.
Ties between equally frequent pairs go to the pair seen first in the text, so training
is deterministic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from coursekit.validation import check_positive_int

Pair = tuple[int, int]


def _check_text(text: object, name: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name}: expected a str, got {type(text).__name__}")
    return text


def _check_ids(ids: object, name: str = "ids", size: int | None = None) -> list[int]:
    """A 1-D sequence of token ids (list, tuple, array or tensor of integers) as a list of ints.

    Tensor or array elements are compared by value, not by identity (``Counter`` of 0-d
    tensors would count each element apart); a string is refused, not read as characters.
    """
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise TypeError(f"{name}: expected a sequence of integer token ids, got "
                        f"{type(ids).__name__}")
    arr = np.asarray(ids.tolist() if hasattr(ids, "tolist") else list(ids))
    if arr.ndim != 1 or (arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0)):
        raise ValueError(f"{name}: expected a 1-D sequence of integer token ids >= 0, got "
                         f"{ids!r:.60}")
    if size is not None and arr.size and arr.max() >= size:
        raise ValueError(f"{name}: unknown token id {arr.max()} (vocabulary size {size})")
    return arr.tolist()


def pair_counts(ids: Sequence[int]) -> Counter[Pair]:
    """Counts of adjacent pairs ``(ids[t], ids[t+1])``, in order of first appearance."""
    return _pair_counts(_check_ids(ids))


def _pair_counts(ids: list[int]) -> Counter[Pair]:
    return Counter(zip(ids[:-1], ids[1:], strict=False))


def merge_pair(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace each non-overlapping occurrence of ``pair`` (left to right) by ``new_id``."""
    ids, new_id = _check_ids(ids), check_positive_int(new_id, "new_id", minimum=0)
    a_b = _check_ids(pair, "pair")
    if len(a_b) != 2:
        raise ValueError(f"pair: expected two token ids, got {pair!r:.60}")
    return _merge_pair(ids, (a_b[0], a_b[1]), new_id)


def _merge_pair(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    # bare: BytePairEncoder.train and encode call it once per merge
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BytePairEncoder:
    """A byte-level BPE tokenizer: ``train`` it on a text, then ``encode``/``decode``.

    Attributes:
        merges: list of ``((a, b), new_id)`` in the order learned.
        vocab: ``id -> bytes`` for the 256 bytes and every merged token.
    """

    def __init__(self) -> None:
        self.merges: list[tuple[Pair, int]] = []
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}

    def __len__(self) -> int:
        """Vocabulary size: 256 + number of merges."""
        return len(self.vocab)

    @classmethod
    def train(cls, text: str, n_merges: int) -> BytePairEncoder:
        """Learn up to ``n_merges`` merges on ``text`` (stops early if no pair repeats).

        Args:
            text: the training text.  n_merges: number of merges, >= 1.
        """
        text = _check_text(text, "text")
        n_merges = check_positive_int(n_merges, "n_merges")
        bpe = cls()
        ids = list(text.encode("utf-8"))
        for _ in range(n_merges):
            counts = _pair_counts(ids)
            if not counts:
                break
            pair, count = counts.most_common(1)[0]   # ties: first seen in the text
            if count < 2:
                break                                 # merging a single pair saves nothing
            new_id = len(bpe.vocab)
            ids = _merge_pair(ids, pair, new_id)
            bpe.merges.append((pair, new_id))
            bpe.vocab[new_id] = bpe.vocab[pair[0]] + bpe.vocab[pair[1]]
        return bpe

    def encode(self, text: str, n_merges: int | None = None) -> list[int]:
        """Token ids of ``text``: its bytes, then the merges in the order learned.

        Args:
            text: any string.  n_merges: apply only the first ``n_merges`` merges
                (default all), e.g. to watch the length shrink merge by merge.
        """
        text = _check_text(text, "text")
        merges = self.merges if n_merges is None else self.merges[
            : check_positive_int(n_merges, "n_merges", minimum=0)]
        ids = list(text.encode("utf-8"))
        for pair, new_id in merges:
            ids = _merge_pair(ids, pair, new_id)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids (bytes concatenated, decoded as UTF-8)."""
        ids = _check_ids(ids, size=len(self.vocab))
        data = b"".join(self.vocab[i] for i in ids)
        return data.decode("utf-8", errors="replace")

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Each token as text (for display; a token may hold part of a UTF-8 character)."""
        ids = _check_ids(ids, size=len(self.vocab))
        return [self.vocab[i].decode("utf-8", errors="replace") for i in ids]
