"""Tests of coursekit.tokenizer (byte-pair encoding) against an independent implementation."""

import pytest

from coursekit.language_model import load_corpus
from coursekit.tokenizer import BytePairEncoder, merge_pair, pair_counts

TEXT = load_corpus()


def reference_bpe(text: str, n_merges: int) -> list[bytes]:
    """BPE written differently: tokens are bytes objects, pairs counted by a plain loop."""
    tokens = [bytes([b]) for b in text.encode("utf-8")]
    learned = []
    for _ in range(n_merges):
        counts: dict[tuple[bytes, bytes], int] = {}
        for a, b in zip(tokens, tokens[1:], strict=False):
            counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            break
        best = max(counts.values())
        if best < 2:
            break
        pair = next(p for p, c in counts.items() if c == best)   # first seen wins ties
        merged, i = [], 0
        while i < len(tokens):
            if i + 1 < len(tokens) and (tokens[i], tokens[i + 1]) == pair:
                merged.append(pair[0] + pair[1])
                i += 2
            else:
                merged.append(tokens[i])
                i += 1
        tokens = merged
        learned.append(pair[0] + pair[1])
    return learned


def test_merges_match_an_independent_implementation():
    text = TEXT[:4000]
    bpe = BytePairEncoder.train(text, 60)
    learned = [bpe.vocab[new_id] for _, new_id in bpe.merges]
    assert learned == reference_bpe(text, 60)


def test_round_trip_on_any_text():
    bpe = BytePairEncoder.train(TEXT[:6000], 100)
    for s in (TEXT, TEXT[-3000:], "", "é β 漢字 🙂 tabs\tand\nnewlines", "aaaaaaa"):
        assert bpe.decode(bpe.encode(s)) == s


def test_each_merge_shortens_the_training_text():
    text = TEXT[:5000]
    bpe = BytePairEncoder.train(text, 80)
    lengths = [len(bpe.encode(text, n_merges=k)) for k in range(len(bpe.merges) + 1)]
    assert lengths[0] == len(text.encode("utf-8"))
    assert all(b < a for a, b in zip(lengths, lengths[1:], strict=False))
    assert lengths[-1] == len(bpe.encode(text))


def test_helpers_and_vocabulary():
    assert pair_counts([1, 2, 1, 2, 3]) == {(1, 2): 2, (2, 1): 1, (2, 3): 1}
    assert merge_pair([1, 1, 1, 2], (1, 1), 9) == [9, 1, 2]       # non-overlapping
    bpe = BytePairEncoder.train("abababab cdcd", 5)
    assert len(bpe) == 256 + len(bpe.merges)
    for (a, b), new_id in bpe.merges:
        assert bpe.vocab[new_id] == bpe.vocab[a] + bpe.vocab[b]
    assert bpe.token_strings(bpe.encode("abab")) == ["abab"]


def test_training_stops_when_no_pair_repeats():
    bpe = BytePairEncoder.train("abcdef", 10)
    assert bpe.merges == []


def test_bad_inputs():
    with pytest.raises(TypeError, match="text"):
        BytePairEncoder.train(b"bytes", 3)
    with pytest.raises(ValueError, match="n_merges"):
        BytePairEncoder.train("abc", 0)
    with pytest.raises(ValueError, match="unknown token id"):
        BytePairEncoder().decode([300])
    with pytest.raises(TypeError, match="text"):
        BytePairEncoder().encode(None)
