"""Checks for the translation assignment (A3): vocabularies, batches, an attention encoder-decoder, BLEU.

The student's model honours one contract, which the notebook states and every check relies on:

    model = Seq2Seq(src_vocab_size, tgt_vocab_size)           # every other argument has a default
    state, memory = model.encode(src, src_len)               # src (B, S) ids, src_len (B,) lengths
    logits, state, weights = model.decoder.step(y_prev, state, memory)  # y_prev (B,) -> logits (B, V)
    logits = model(src, src_len, tgt_in)                      # teacher forcing: (B, T) -> (B, T, V)
    context, weights = model.decoder.attention(query, enc_out, mask)   # (B, Q), (B, S, K), (B, S)

``state`` and ``memory`` are opaque: whatever the student's encoder hands its decoder (a GRU state or an
LSTM (h, c) pair; the encoder outputs and the padding mask). The grader's oracles run the model only
through ``encode`` and ``step``, so a bug in the student's own teacher-forcing loss or greedy decoder
never costs the points of the trained model, and the other way round.
"""
from __future__ import annotations

import random
from collections import Counter
from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F

from da6401.grader.checkpoints import CheckpointError, load_into, read_checkpoint
from da6401.grader.checks import call_student
from da6401.student.checks import LOSS_BAND
from da6401.student.objects import is_instance, kernel_of, run_beside, type_name
from da6401.text import EOS, PAD, SOS, SPECIALS, detokenise, tokenise

BLEU_TOLERANCE = 0.01  # BLEU points; the student's BLEU and sacreBLEU agree to float rounding when both are right


def _words(rng: random.Random, n: int, capitals: bool = False) -> list[str]:
    """n distinct made-up words, lowercase (a third of them capitalised if ``capitals``)."""
    words: set[str] = set()
    while len(words) < n:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 6)))
        words.add(word.capitalize() if capitals and rng.random() < 0.33 else word)
    return sorted(words)


def check_vocab(build_vocab: Callable, seed: int) -> None:
    """Fail unless ``build_vocab(tokenised_sentences, min_freq)`` returns the vocabulary's itos list:
    the four specials first, then exactly the tokens seen at least ``min_freq`` times, once each,
    most frequent first, ties in plain string order (capitals before lowercase, as ``sorted`` puts them)."""
    __tracebackhide__ = True
    rng = random.Random(seed)
    vocabulary = _words(rng, 60, capitals=True)
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]  # Zipf: a few frequent words, many rare
    sentences = [rng.choices(vocabulary, weights, k=rng.randint(1, 12)) for _ in range(150)]
    counts = Counter(token for sentence in sentences for token in sentence)
    for min_freq in (1, 3):
        itos = build_vocab(sentences, min_freq)
        assert isinstance(itos, list), f"build_vocab returned a {type(itos).__name__}; return the list itos"
        assert itos[:4] == SPECIALS, f"the vocabulary must start with {SPECIALS}; it starts with {itos[:4]}"
        words = itos[4:]
        assert len(set(words)) == len(words), "a token appears twice in the vocabulary"
        expected = {t for t, n in counts.items() if n >= min_freq}
        assert set(words) == expected, (
            f"min_freq={min_freq}: {len(expected - set(words))} tokens seen at least {min_freq} times are missing "
            f"(e.g. {sorted(expected - set(words))[:3]}) and {len(set(words) - expected)} others are in "
            f"(e.g. {sorted(set(words) - expected)[:3]})")
        frequencies = [counts[t] for t in words]
        assert frequencies == sorted(frequencies, reverse=True), "order the tokens most frequent first"
        ordered = sorted(expected, key=lambda t: (-counts[t], t))
        first = next((i for i, (a, b) in enumerate(zip(words, ordered)) if a != b), None)
        assert first is None, (f"min_freq={min_freq}: equally frequent tokens are out of order at position {first + 4}: "
                               f"{words[first:first + 3]}, expected {ordered[first:first + 3]} (ties in plain string "
                               "order: sorted(), where 'Dog' comes before 'cat')")


def check_notebook_vocabularies(src_itos: list, tgt_itos: list, min_freq: int) -> None:
    """Fail unless the notebook's vocabularies are those of the training split alone (German for the source,
    English for the target), at its ``MIN_FREQ``: no validation or test sentence may shape them."""
    __tracebackhide__ = True
    from da6401.data import load_multi30k

    pairs = load_multi30k("train")
    for name, got, side in (("src_itos", src_itos, 0), ("tgt_itos", tgt_itos, 1)):
        counts = Counter(token for pair in pairs for token in tokenise(pair[side]))
        want = SPECIALS + sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        got = list(got)
        assert got == want, (f"{name} ({len(got):,} tokens) is not the vocabulary of the training split's "
                             f"{'German' if side == 0 else 'English'} sentences at MIN_FREQ={min_freq} ({len(want):,} "
                             "tokens): build it from train_pairs only")


def check_pad_batch(pad_batch: Callable, seed: int) -> None:
    """Fail unless ``pad_batch(seqs)`` returns (ids (B, L) int64 padded with PAD to the longest, lengths (B,))."""
    __tracebackhide__ = True
    rng = random.Random(seed)
    seqs = [[rng.randint(4, 99) for _ in range(rng.randint(1, 9))] for _ in range(6)]
    seqs[2] = [5] * 11  # the longest is in the middle, not first or last
    ids, lengths = pad_batch(seqs)
    assert tuple(ids.shape) == (6, 11), f"ids: expected shape (6, 11) for 6 sequences of at most 11, got {tuple(ids.shape)}"
    assert ids.dtype == torch.long, f"ids must be int64 (nn.Embedding wants it), got {ids.dtype}"
    assert isinstance(lengths, torch.Tensor) and lengths.dtype == torch.long, (
        f"lengths must be an int64 tensor, as the docstring says; got {type_name(lengths)}"
        + (f" of {lengths.dtype}" if isinstance(lengths, torch.Tensor) else ""))
    assert torch.equal(torch.as_tensor(lengths), torch.tensor([len(s) for s in seqs])), f"lengths {lengths} are wrong"
    for i, s in enumerate(seqs):
        assert ids[i, :len(s)].tolist() == s, f"row {i} does not start with sequence {i}"
        assert (ids[i, len(s):] == PAD).all(), f"row {i} is not padded with PAD={PAD} after its {len(s)} ids"


def _batch(gen: torch.Generator, vocab_size: int, lengths: list[int], sos_eos: bool):
    """Random ids (B, max(lengths)) padded with PAD, ending with EOS (and starting with SOS if sos_eos)."""
    ids = torch.full((len(lengths), max(lengths)), PAD, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(4, vocab_size, (n,), generator=gen)
        ids[i, n - 1] = EOS
        if sos_eos:
            ids[i, 0] = SOS
    return ids, torch.tensor(lengths)


def _fresh(make_model: Callable, src_vocab: int, tgt_vocab: int, seed: int) -> torch.nn.Module:
    """The student's model, freshly initialised from ``seed``, in eval mode with dropout off."""
    kernel_of(make_model).module("torch").manual_seed(seed)
    model = call_student(f"make_model({src_vocab}, {tgt_vocab})", make_model, src_vocab, tgt_vocab)
    for module in model.modules():
        if is_instance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
    return model.eval()


def check_model_shapes(make_model: Callable, seed: int) -> None:
    """Fail unless the model honours the contract's shapes: encode, step, forward (teacher forcing)."""
    __tracebackhide__ = True
    model = _fresh(make_model, 37, 41, seed)
    gen = torch.Generator().manual_seed(seed)
    src, src_len = _batch(gen, 37, [5, 2, 7], sos_eos=False)
    tgt, _ = _batch(gen, 41, [4, 6, 3], sos_eos=True)
    for mode in ("train", "eval"):
        model.train(mode == "train")
        with torch.no_grad():
            state, memory = call_student("model.encode(src, src_len)", model.encode, src, src_len)
            logits, state, weights = call_student("model.decoder.step(y_prev, state, memory)", model.decoder.step,
                                          tgt[:, 0], state, memory)
            assert tuple(logits.shape) == (3, 41), f"{mode} mode: step gave logits of shape {tuple(logits.shape)}, expected (3, 41)"
            if weights is not None:
                assert tuple(weights.shape) == (3, 7), f"step gave attention weights of shape {tuple(weights.shape)}, expected (B, S) = (3, 7)"
            full = call_student("model(src, src_len, tgt_in)", model, src, src_len, tgt[:, :-1])
        assert tuple(full.shape) == (3, 5, 41), f"{mode} mode: model(src, src_len, tgt_in) gave {tuple(full.shape)}, expected (B, T, V) = (3, 5, 41)"
        assert torch.isfinite(full).all(), f"{mode} mode: the logits are not all finite"
    call_student("the model's parameters", run_beside, model, _amplify, model, 3.0)
    with torch.no_grad():
        full = call_student("model(src, src_len, tgt_in)", model, src, src_len, tgt[:, :-1])
    _check_consistency(model, src, src_len, tgt, full)


def _amplify(model, factor: float) -> None:
    """Beside the model: scale every parameter by ``factor``. A fresh model's attention is nearly uniform, so a
    forward that reuses one context would agree with step to 1e-7; amplified, the attention follows the state
    and they differ by ~5 % (the consistency holds for any parameters of a correct model)."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(factor)


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest difference of two float32 computations of the same logits, relative to their scale."""
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


CONSISTENCY_BAND = 1e-4  # float32 GRU/LSTM through different kernels (packed, cell by cell): ~1e-6 apart


def _check_consistency(model, src, src_len, tgt, full) -> None:
    """In eval mode: a sentence's logits are the same alone as in a padded batch (the encoder never reads
    padding, the mask hides exactly it), and the teacher-forced forward equals stepping ``decoder.step`` through
    the same inputs (forward is what training fits; step is what decoding and the grader's oracle use)."""
    __tracebackhide__ = True
    tgt_in = tgt[:, :-1]
    with torch.no_grad():
        for b in range(len(src)):
            n, m = int(src_len[b]), int((tgt_in[b] != PAD).sum())
            alone = call_student("model(src, src_len, tgt_in) on one sentence", model, src[b:b + 1, :n], src_len[b:b + 1],
                                 tgt_in[b:b + 1, :m])
            gap = _close(alone[0, :m], full[b, :m])
            assert gap <= CONSISTENCY_BAND, (
                f"sentence {b}'s logits change by {gap:.3g} (relative) when it is translated alone instead of in a batch "
                "padded to a longer sentence: the encoder must not read padding (pack the sequence) and the attention "
                "mask must cover exactly the real tokens (positions < length)")
        state, memory = call_student("model.encode(src, src_len)", model.encode, src, src_len)
        for t in range(tgt_in.size(1)):
            logits, state, _ = call_student("model.decoder.step(y_prev, state, memory)", model.decoder.step,
                                            tgt_in[:, t], state, memory)
            real = tgt_in[:, t] != PAD
            gap = _close(logits[real], full[real, t])
            assert gap <= CONSISTENCY_BAND, (
                f"at target position {t} the teacher-forced forward and decoder.step disagree by {gap:.3g} (relative): "
                "forward must compute, at every position, exactly what step computes from the same inputs")


def check_attention(attention: torch.nn.Module, query_dim: int, key_dim: int, seed: int) -> None:
    """Fail unless ``attention(query (B, Q), enc_out (B, S, K), mask (B, S))`` returns weights (B, S) that are
    a distribution over the real source positions (zero on padding) and context = weights @ enc_out."""
    __tracebackhide__ = True
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([6, 1, 3, 6, 4])
    mask = torch.arange(6)[None, :] < lengths[:, None]                    # (B, S), True at real tokens
    query = torch.randn(5, query_dim, generator=gen)
    enc_out = torch.randn(5, 6, key_dim, generator=gen)
    attention.eval()
    with torch.no_grad():
        context, weights = call_student("attention(query, enc_out, mask)", attention, query, enc_out, mask)
        assert tuple(weights.shape) == (5, 6), f"weights: expected shape (B, S) = (5, 6), got {tuple(weights.shape)}"
        assert tuple(context.shape) == (5, key_dim), f"context: expected (B, K) = (5, {key_dim}), got {tuple(context.shape)}"
        assert torch.isfinite(weights).all(), "some attention weights are not finite"
        assert (weights >= 0).all(), "attention weights must not be negative"
        assert torch.allclose(weights.sum(-1), torch.ones(5), atol=1e-5), f"rows must sum to 1; sums {weights.sum(-1).tolist()}"
        on_padding = weights[~mask].abs().max().item()
        assert on_padding < 1e-6, f"padding positions get attention weight up to {on_padding:.3g}; it must be 0 (use the mask)"
        expected = torch.bmm(weights.unsqueeze(1), enc_out).squeeze(1)
        assert torch.allclose(context, expected, atol=1e-5, rtol=1e-4), "context is not the weighted sum of enc_out"
        other = torch.randn(5, query_dim, generator=gen)
        _, weights_other = call_student("attention(query, enc_out, mask)", attention, other, enc_out, mask)
        moved = float((weights_other - weights).abs().max())
        assert moved > 1e-3, (f"another query changed the attention weights by at most {moved:.2g}: they must depend on "
                              "the decoder state (in additive attention the tanh mixes query and keys)")
        noisy = enc_out.clone()
        noisy[~mask] = 1e3 * torch.randn(int((~mask).sum()), key_dim, generator=gen)
        context2, _ = attention(query, noisy, mask)
        assert torch.allclose(context, context2, atol=1e-4), "what sits at padded positions changed the context"


def _oracle_loss(model, src, src_len, tgt, label_smoothing: float = 0.0) -> torch.Tensor:
    """Teacher forcing: the model's logits for inputs tgt[:, :-1], scored against tgt[:, 1:]; mean cross-entropy
    over non-PAD targets. (The model's own forward, so a model whose forward and step disagree costs the model's
    cell, where :func:`check_model_shapes` compares them, not the loss's.)"""
    logits = model(src, src_len, tgt[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), tgt[:, 1:].reshape(-1), ignore_index=PAD,
                           label_smoothing=label_smoothing)


class _LowPrecision(torch.nn.Module):
    """The model with its logits handed out in bfloat16, as under autocast: the loss must still be float32."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model(*args).to(torch.bfloat16)

    def __getattr__(self, name):  # the rest of the model (encode, decoder, ...) as it is
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("model"), name)


def _low_precision_loss(translation_loss, model, src, src_len, tgt) -> tuple[str, float]:
    """Beside the model (in its kernel): the loss's dtype and value for bfloat16 logits."""
    loss = translation_loss(_LowPrecision(model), src, src_len, tgt)
    return str(getattr(loss, "dtype", type(loss).__name__)), float(loss)


def _sharpen(model, src, src_len, tgt, steps: int = 15, lr: float = 3e-3) -> None:
    """Adam steps on the oracle's loss: make an untrained model's predictions on this batch confident."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        _oracle_loss(model, src, src_len, tgt).backward()
        optimizer.step()


def check_teacher_forcing_loss(translation_loss: Callable, make_model: Callable, seed: int) -> None:
    """Fail unless ``translation_loss(model, src, src_len, tgt)`` equals the oracle's teacher-forced mean
    cross-entropy (inputs SOS y1 .. y_{T-1}, targets y1 .. EOS, PAD ignored) on an unseen batch."""
    __tracebackhide__ = True
    model = _fresh(make_model, 53, 47, seed)
    gen = torch.Generator().manual_seed(seed)
    src, src_len = _batch(gen, 53, [7, 3, 5, 9], sos_eos=False)
    tgt, _ = _batch(gen, 47, [6, 10, 4, 8], sos_eos=True)
    # An untrained model predicts nearly uniformly, so any targets give a loss near log(V). A few steps on this
    # batch (through the oracle, beside the model: autograd does not cross into the grader) make its predictions
    # sharp, so a shifted or mis-averaged loss differs by a lot.
    call_student("the model's forward", run_beside, model, _sharpen, model, src, src_len, tgt)
    with torch.no_grad():
        expected = _oracle_loss(model, src, src_len, tgt).item()
        smoothed = _oracle_loss(model, src, src_len, tgt, label_smoothing=0.1).item()
        model.eval()
        got = call_student("translation_loss(model, src, src_len, tgt)", translation_loss, model, src, src_len, tgt)
        assert not model.training, "translation_loss put the model in train mode: leave the mode as the caller set it"
        got_smoothed = call_student("translation_loss(..., label_smoothing=0.1)", translation_loss, model, src, src_len,
                                    tgt, label_smoothing=0.1)
        model.train()
        call_student("translation_loss(model, src, src_len, tgt)", translation_loss, model, src, src_len, tgt)
        assert model.training, "translation_loss put the model in eval mode: leave the mode as the caller set it"
        model.eval()
        dtype, _ = call_student("translation_loss on bfloat16 logits", run_beside, model, _low_precision_loss,
                                translation_loss, model, src, src_len, tgt)
    got, got_smoothed = float(got), float(got_smoothed)
    print(f"teacher-forced loss on an unseen batch: {got:.6f} (oracle {expected:.6f})")
    assert abs(got - expected) <= LOSS_BAND * max(1.0, abs(expected)), (
        f"translation_loss gave {got:.6f}; feeding SOS y1 .. y_(T-1) and predicting y1 .. EOS, averaged over the "
        f"non-padding targets, gives {expected:.6f}")
    assert abs(got_smoothed - smoothed) <= LOSS_BAND * max(1.0, abs(smoothed)), (
        f"translation_loss(..., label_smoothing=0.1) gave {got_smoothed:.6f}; with label smoothing 0.1 the loss is "
        f"{smoothed:.6f}" + (" (that is the unsmoothed loss: pass label_smoothing on)" if abs(got_smoothed - expected)
                             <= LOSS_BAND * max(1.0, abs(expected)) else ""))
    assert dtype == "torch.float32", (f"for bfloat16 logits (as under autocast) translation_loss returned {dtype}; "
                                      "compute the cross-entropy in float32 (logits.float())")


class _ScriptedDecoder(torch.nn.Module):
    """A decoder whose argmax at step t for sentence b is script[b][t]; it records what it is fed in buffers
    (buffers come back from the kernel with the model's state)."""

    def __init__(self, script: list[list[int]], vocab_size: int = 20, max_steps: int = 64):
        super().__init__()
        self.script, self.vocab_size = script, vocab_size
        self.register_buffer("fed", torch.full((max_steps, len(script)), -1, dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def step(self, y_prev, state, memory):
        t = int(self.steps)
        if t < len(self.fed):
            self.fed[t] = y_prev.detach().long().reshape(-1)[:self.fed.shape[1]]
        self.steps += 1
        logits = torch.zeros(len(self.script), self.vocab_size)
        for b, tokens in enumerate(self.script):
            logits[b, tokens[t] if t < len(tokens) else 4 + (t + b) % (self.vocab_size - 4)] = 5.0
        return logits, state + 1, None

    def fed_steps(self) -> list[torch.Tensor]:
        return list(self.fed[:min(int(self.steps), len(self.fed))])


class _ScriptedModel(torch.nn.Module):
    def __init__(self, script):
        super().__init__()
        self.decoder = _ScriptedDecoder(script)

    def encode(self, src, src_len):
        return torch.zeros(src.size(0), 1), {"src": src}

    def forward(self, *args):
        raise AssertionError("greedy decoding should call encode and decoder.step, not the teacher-forcing forward")


def check_greedy_decode(greedy_decode: Callable) -> None:
    """Fail unless ``greedy_decode(model, src, src_len, max_len)`` feeds SOS then its own argmax, pads with PAD
    after each sentence's EOS, never exceeds ``max_len`` tokens and stops once every sentence has ended."""
    __tracebackhide__ = True
    src, src_len = torch.full((3, 4), 5), torch.tensor([4, 4, 4])
    # Sentence 0 ends after 3 tokens and would babble on; sentence 1 never ends; sentence 2 ends at once.
    never = [6, 7, 8, 9, 10, 11, 12, 13, 14]
    model = _ScriptedModel([[5, 6, EOS, 7, 8, 9, 10, 11, 12], never, [EOS, 9, 9, 9, 9, 9, 9, 9, 9]])
    out = call_student("greedy_decode(model, src, src_len, max_len=6)", greedy_decode, model, src, src_len, 6)
    assert isinstance(out, torch.Tensor), f"greedy_decode must return a tensor of token ids, got {type_name(out)}"
    assert out.dtype == torch.long, f"return token ids as int64, not {out.dtype}"
    assert out.dim() == 2 and out.size(0) == 3, f"expected (B, L) = (3, L), got {tuple(out.shape)}"
    assert out.size(1) <= 6, f"max_len=6 but the output has {out.size(1)} tokens per sentence"
    rows = out.tolist()
    assert rows[1] == never[:6], f"a sentence without EOS must run to max_len: got {rows[1]}, expected {never[:6]}"
    assert rows[0][:3] == [5, 6, EOS] and all(t == PAD for t in rows[0][3:]), (
        f"after its EOS a sentence must hold only PAD={PAD}: got {rows[0]}, expected [5, 6, {EOS}, {PAD}, ...]")
    assert rows[2][0] == EOS and all(t == PAD for t in rows[2][1:]), f"got {rows[2]} for a sentence that ends at once"
    fed = model.decoder.fed_steps()
    assert fed and (fed[0] == SOS).all(), f"the first step must be fed SOS={SOS} for every sentence, got {fed[0].tolist()}"
    assert fed[2][1].item() == 7, "greedy decoding must feed each step its own previous prediction (the argmax)"

    model = _ScriptedModel([[5, EOS] + never, [6, 7, EOS] + never])
    out = call_student("greedy_decode(model, src, src_len, max_len=50)", greedy_decode, model, src[:2], src_len[:2], 50)
    steps = int(model.decoder.steps)
    assert steps == 3, f"every sentence had ended after 3 steps, but decoding ran {steps} steps (max_len=50)"
    width = out.size(1)  # 3, or more when the student pads every row to a fixed length
    assert out.tolist() == [[5, EOS] + [PAD] * (width - 2), [6, 7, EOS] + [PAD] * (width - 3)], f"got {out.tolist()}"


def check_bleu(corpus_bleu: Callable, seed: int) -> None:
    """Fail unless ``corpus_bleu(hypotheses, references)`` (lists of token lists; BLEU-4 in [0, 100], no smoothing)
    equals sacreBLEU's corpus BLEU on the same tokens to within BLEU_TOLERANCE, on unseen corpora and edge cases."""
    __tracebackhide__ = True
    from sacrebleu.metrics import BLEU

    def sacre(hyps, refs, max_n=4) -> float:
        metric = BLEU(tokenize="none", smooth_method="none", force=True, max_ngram_order=max_n)
        return metric.corpus_score([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]]).score

    rng = random.Random(seed)
    words = _words(rng, 12)

    def noisy_copy(ref):  # a hypothesis that shares some n-grams with its reference
        hyp = [w if rng.random() < 0.7 else rng.choice(words) for w in ref]
        return hyp[:rng.randint(max(1, len(hyp) - 3), len(hyp) + 2)] + rng.choices(words, k=rng.randint(0, 2))

    cases = {}
    for i in range(3):
        refs = [rng.choices(words, k=rng.randint(4, 15)) for _ in range(30)]
        cases[f"unseen corpus {i + 1}"] = ([noisy_copy(r) for r in refs], refs)
    refs = [rng.choices(words, k=10) for _ in range(8)]
    cases["hypotheses shorter than the references (brevity penalty)"] = ([r[:6] for r in refs], refs)
    cases["hypotheses longer than the references"] = ([r + r[:5] for r in refs], refs)
    cases["repeated words (clipped counts)"] = ([("the cat sat on the mat the the the the".split()), "a a a dog".split()],
                                                ["the cat sat on the mat with the dog".split(), "a dog".split()])
    cases["an empty hypothesis in the corpus"] = ([[], refs[1][:8]], refs[:2])
    cases["no matching 4-gram"] = ([["a", "b", "c", "x", "e", "f"]], [["a", "b", "c", "d", "e", "f"]])
    cases["every hypothesis empty"] = ([[], []], refs[:2])
    cases["a perfect translation"] = (refs, refs)
    wrong = []
    for name, (hyps, refs) in cases.items():
        expected = sacre(hyps, refs)
        got = float(call_student(f"corpus_bleu on '{name}'", corpus_bleu, [list(h) for h in hyps], [list(r) for r in refs]))
        if not abs(got - expected) <= BLEU_TOLERANCE:
            wrong.append(f"{name}: yours {got:.4f}, sacreBLEU {expected:.4f}")
    for max_n in (1, 2):  # the documented argument: BLEU-1, BLEU-2 of the first unseen corpus
        hyps, refs = cases["unseen corpus 1"]
        expected = sacre(hyps, refs, max_n)
        try:
            got = float(call_student(f"corpus_bleu(..., max_n={max_n})", corpus_bleu, [list(h) for h in hyps],
                                     [list(r) for r in refs], max_n=max_n))
        except AssertionError as e:
            wrong.append(str(e))
            continue
        if not abs(got - expected) <= BLEU_TOLERANCE:
            wrong.append(f"unseen corpus 1 with max_n={max_n}: yours {got:.4f}, sacreBLEU {expected:.4f}")
    assert not wrong, (f"corpus_bleu differs from sacreBLEU by more than {BLEU_TOLERANCE} on {len(wrong)} of "
                       f"{len(cases) + 2} cases:\n  " + "\n  ".join(wrong))


# ------------------------------------------------------------------------------------------------------
# The trained checkpoint
# ------------------------------------------------------------------------------------------------------
def load_translator(make_model: Callable, path) -> tuple[torch.nn.Module, list[str], list[str]]:
    """:func:`da6401.student.checkpoints.load_translator` of the submission's file ``path``."""
    __tracebackhide__ = True
    from da6401.grader.context import submitted_file
    from da6401.student.checkpoints import load_translator as load

    return load(make_model, submitted_file(path))


def translate(model, sentences: list[str], src_itos: list[str], tgt_itos: list[str], batch_size: int = 200) -> list[str]:
    """The grader's greedy translation through ``model.encode`` and ``model.decoder.step``.

    The decoding loop (:func:`_greedy_ids`) runs beside the model, in the student's kernel when it is there: one
    request per batch instead of one per step, each of which would carry the batch's logits back (hundreds of MB
    over the test set). That gives the student's code no power it lacks: its model computes every step anyway.
    The grader tokenises, detokenises and scores.

    Inputs: sentences, raw German strings; src_itos / tgt_itos, the checkpoint's vocabularies.
    Returns: detokenised English strings, one per sentence (<unk> dropped: sacreBLEU would split it into 3 tokens).
    """
    stoi = {t: i for i, t in enumerate(src_itos)}
    unk = SPECIALS.index("<unk>")
    ids = [[stoi.get(t, unk) for t in tokenise(s)] + [EOS] for s in sentences]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[str] = [""] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        tokens = run_beside(model, _greedy_ids, model, [ids[i] for i in chunk], PAD, SOS, EOS)
        if not (isinstance(tokens, list) and len(tokens) == len(chunk)
                and all(isinstance(row, list) and all(type(t) is int for t in row) for row in tokens)):
            raise ValueError("the decoding loop did not return one list of token ids per sentence")
        for row, i in enumerate(chunk):
            out[i] = detokenise([tgt_itos[t] for t in tokens[row] if len(SPECIALS) <= t < len(tgt_itos)])
    return out


def _greedy_ids(model, batch: list[list[int]], pad: int, sos: int, eos: int) -> list[list[int]]:
    """Greedy decoding of one batch of source id lists (each ending in EOS) with ``model``, in eval mode, up to
    2 * the longest source + 10 steps; the output tokens of each sentence before its EOS. Runs beside the model."""
    import torch

    model.eval()
    with torch.no_grad():
        lengths = torch.tensor([len(row) for row in batch])
        src = torch.full((len(batch), int(lengths.max())), pad, dtype=torch.long)
        for r, row in enumerate(batch):
            src[r, :len(row)] = torch.tensor(row)
        state, memory = model.encode(src, lengths)
        y = torch.full((len(batch),), sos, dtype=torch.long)
        done = torch.zeros(len(batch), dtype=torch.bool)
        tokens: list[list[int]] = [[] for _ in batch]
        for _ in range(2 * int(lengths.max()) + 10):
            logits, state, _ = model.decoder.step(y, state, memory)
            y = logits.argmax(-1)
            for r in torch.nonzero(~done & (y != eos)).flatten().tolist():
                tokens[r].append(int(y[r]))
            done |= y == eos
            if done.all():
                break
    return tokens


# The grader's own seed for the order and the perturbation of the graded test sentences (never shipped).
GRADED_SEED = 0x5EED_DE01


def graded_pairs(split: str = "test_2016_flickr", seed: int = GRADED_SEED) -> list[tuple[str, str]]:
    """The graded pairs of ``split`` (:func:`_graded_pairs`, built once per process), as a new list."""
    return list(_graded_pairs(split, seed))


def preload() -> None:
    """Build the graded test sentences (the mutant runner's forks then share them)."""
    _graded_pairs("test_2016_flickr", GRADED_SEED)


@lru_cache(maxsize=2)
def _graded_pairs(split: str, seed: int) -> tuple[tuple[str, str], ...]:
    """The (German, English) pairs of a Multi30k split as the grader translates them: in an order of its own, and
    every source changed in one or both of two ways a translator barely notices: its final full stop taken away
    (or, where it has none, added), and the case of its first letter switched.

    The test set is public, so a notebook could carry a table of its sources and references and hand back the
    reference (keyed by the source's token ids, or by its position in the split). Neither survives this: the
    order is the grader's, and no source is the token sequence the table holds. The bars are calibrated on this
    set (test_thresholds.py).
    """
    from da6401.data import load_multi30k

    rng = random.Random(seed)
    pairs = load_multi30k(split)
    rng.shuffle(pairs)
    graded = []
    for de, en in pairs:
        change = rng.choice(("stop", "case", "both"))
        if change in ("stop", "both"):
            de = de[:-1].rstrip() if de.endswith(".") else de + "."
        if change in ("case", "both") and de[:1].isalpha():
            de = de[0].swapcase() + de[1:]
        graded.append((de, en))
    return tuple(graded)


def assert_test_bleu(model, src_itos: list[str], tgt_itos: list[str], bar: float, split: str = "test_2016_flickr") -> float:
    """Translate the grader's version of a Multi30k split (:func:`graded_pairs`) greedily, print the detokenised
    sacreBLEU and its signature, fail below ``bar``.

    Returns: the BLEU score (0-100).
    """
    __tracebackhide__ = True
    from sacrebleu.metrics import BLEU

    pairs = graded_pairs(split)
    try:
        hypotheses = translate(model, [de for de, _ in pairs], src_itos, tgt_itos)
    except Exception as e:  # the student's encode/step on real data
        raise AssertionError(f"translating {split} failed: {type(e).__name__}: {e}") from None
    metric = BLEU()
    score = metric.corpus_score(hypotheses, [[en for _, en in pairs]]).score
    print(f"{split} sacreBLEU (greedy, detokenised): {score:.2f} (bar: {bar:.1f}) | {metric.get_signature()}")
    assert score >= bar, f"the checkpoint's {split} BLEU is {score:.2f}; it must be at least {bar:.1f}"
    return score
