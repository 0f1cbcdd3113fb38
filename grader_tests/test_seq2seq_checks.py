"""Do the translation checks (A3) pass correct implementations and catch the usual bugs, with messages that say which?"""
from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from da6401.student.checkpoints import CheckpointError, save_weights
from da6401.grader.seq2seq import (check_attention, check_bleu, check_greedy_decode, check_model_shapes,
                                    check_pad_batch, check_teacher_forcing_loss, check_vocab, load_translator,
                                    translate)
from da6401.text import EOS, PAD, SOS, SPECIALS, detokenise, tokenise


# --- vocabularies and batches ------------------------------------------------------------------------
def vocab(sentences, min_freq):
    counts = Counter(t for s in sentences for t in s)
    return SPECIALS + sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))


def vocab_ignores_min_freq(sentences, min_freq):
    return vocab(sentences, 1)


def vocab_without_specials(sentences, min_freq):
    return vocab(sentences, min_freq)[4:]


def vocab_alphabetical(sentences, min_freq):
    return SPECIALS + sorted(vocab(sentences, min_freq)[4:])


def vocab_ties_ignoring_case(sentences, min_freq):
    counts = Counter(t for s in sentences for t in s)
    return SPECIALS + sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t.lower()))


def test_vocab_check_passes_a_correct_vocabulary():
    """Does a frequency-ordered vocabulary with the specials first pass?"""
    check_vocab(vocab, seed=1)


@pytest.mark.parametrize("bad,message", [(vocab_ignores_min_freq, "others are in"), (vocab_without_specials, "must start with"),
                                         (vocab_alphabetical, "most frequent first"),
                                         (vocab_ties_ignoring_case, "out of order")])
def test_vocab_check_catches_min_freq_specials_and_order(bad, message):
    """Are a vocabulary that ignores min_freq, one without specials, one in alphabetical order and one that breaks
    ties ignoring case (the stated order is plain string order) caught?"""
    with pytest.raises(AssertionError, match=message):
        check_vocab(bad, seed=1)


def pad_batch(seqs):
    ids = torch.full((len(seqs), max(map(len, seqs))), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
    return ids, torch.tensor([len(s) for s in seqs])


def pad_batch_with_eos(seqs):
    ids, lengths = pad_batch(seqs)
    return ids.masked_fill(ids == PAD, EOS), lengths


def pad_batch_to_first_length(seqs):
    return pad_batch([s[:len(seqs[0])] for s in seqs])


def pad_batch_int32_lengths(seqs):
    ids, lengths = pad_batch(seqs)
    return ids, lengths.int()


def test_pad_batch_check():
    """Does a correct pad_batch pass, and are padding with EOS, truncating to the first length and int32 lengths
    caught?"""
    with pytest.raises(AssertionError, match="lengths must be an int64 tensor"):
        check_pad_batch(pad_batch_int32_lengths, seed=2)
    check_pad_batch(pad_batch, seed=2)
    with pytest.raises(AssertionError, match="not padded with PAD"):
        check_pad_batch(pad_batch_with_eos, seed=2)
    with pytest.raises(AssertionError, match="expected shape"):
        check_pad_batch(pad_batch_to_first_length, seed=2)


# --- attention -----------------------------------------------------------------------------------------
class Additive(nn.Module):
    def __init__(self, query_dim, key_dim, mask_value=float("-inf"), softmax_dim=-1):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(query_dim, 8), nn.Linear(key_dim, 8), nn.Linear(8, 1)
        self.mask_value, self.softmax_dim = mask_value, softmax_dim

    def forward(self, query, enc_out, mask, keys=None):
        scores = self.v(torch.tanh(self.q(query)[:, None] + self.k(enc_out))).squeeze(-1)
        if self.mask_value is not None:
            scores = scores.masked_fill(~mask, self.mask_value)
        weights = scores.softmax(self.softmax_dim)
        return torch.bmm(weights[:, None], enc_out).squeeze(1), weights


class ScaledDot(nn.Module):
    def __init__(self, query_dim, key_dim):
        super().__init__()
        self.W = nn.Linear(key_dim, query_dim, bias=False)

    def forward(self, query, enc_out, mask, keys=None):
        scores = torch.einsum("bq,bsq->bs", query, self.W(enc_out)) / math.sqrt(query.size(-1))
        weights = scores.masked_fill(~mask, -1e9).softmax(-1)
        return (weights[..., None] * enc_out).sum(1), weights


def test_attention_check_passes_additive_and_multiplicative_attention():
    """Do Bahdanau's additive and Luong's scaled multiplicative attention (masked with -inf or -1e9) both pass?"""
    torch.manual_seed(0)
    check_attention(Additive(12, 10), 12, 10, seed=3)
    check_attention(ScaledDot(12, 10), 12, 10, seed=3)


class AdditiveWithoutTanh(Additive):
    def forward(self, query, enc_out, mask, keys=None):  # v.(Wq q + Wk h): the query shifts every score alike
        scores = self.v(self.q(query)[:, None] + self.k(enc_out)).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return torch.bmm(weights[:, None], enc_out).squeeze(1), weights


@pytest.mark.parametrize("bad,message", [(Additive(12, 10, mask_value=None), "padding positions get attention weight"),
                                         (Additive(12, 10, softmax_dim=0), "rows must sum to 1"),
                                         (AdditiveWithoutTanh(12, 10), "must depend on the decoder state")])
def test_attention_check_catches_an_ignored_mask_and_a_softmax_over_the_batch(bad, message):
    """Are attention without its mask, a softmax over the wrong axis, and additive attention without its tanh (the
    weights then ignore the query) caught?"""
    with pytest.raises(AssertionError, match=message):
        check_attention(bad, 12, 10, seed=3)


# --- a minimal model honouring the contract -----------------------------------------------------------
class TinySeq2Seq(nn.Module):
    """Embedding + GRU encoder, GRUCell decoder reading an additive-attention context: the contract, small."""

    def __init__(self, src_vocab_size, tgt_vocab_size, hid=16):
        super().__init__()
        self.src_emb = nn.Embedding(src_vocab_size, hid, padding_idx=PAD)
        self.encoder_rnn = nn.GRU(hid, hid, batch_first=True)
        self.decoder = TinyDecoder(tgt_vocab_size, hid)

    def encode(self, src, src_len):
        enc_out, last = self.encoder_rnn(self.src_emb(src))  # forward-only: a position never sees later padding
        mask = torch.arange(src.size(1))[None] < src_len[:, None]
        real = mask.unsqueeze(-1).float()
        return (enc_out * real).sum(1) / real.sum(1), {"enc_out": enc_out, "mask": mask}

    def forward(self, src, src_len, tgt_in):
        state, memory = self.encode(src, src_len)
        logits = []
        for t in range(tgt_in.size(1)):
            step_logits, state, _ = self.decoder.step(tgt_in[:, t], state, memory)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)


class TinyDecoder(nn.Module):
    def __init__(self, vocab_size, hid):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hid, padding_idx=PAD)
        self.attention = Additive(hid, hid)
        self.rnn = nn.GRUCell(2 * hid, hid)
        self.out = nn.Linear(hid, vocab_size)

    def step(self, y_prev, state, memory):
        context, weights = self.attention(state, memory["enc_out"], memory["mask"])
        state = self.rnn(torch.cat([self.embedding(y_prev), context], -1), state)
        return self.out(state), state, weights


def loss(model, src, src_len, tgt, label_smoothing=0.0):
    logits = model(src, src_len, tgt[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1).float(), tgt[:, 1:].flatten(), ignore_index=PAD,
                           label_smoothing=label_smoothing)


def loss_off_by_one(model, src, src_len, tgt, label_smoothing=0.0):
    logits = model(src, src_len, tgt[:, 1:])
    return F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD)


def loss_counts_padding(model, src, src_len, tgt, label_smoothing=0.0):
    logits = model(src, src_len, tgt[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten())


def test_model_shape_check_passes_the_contract():
    """Does a small model that honours encode/step/forward pass the shape check?"""
    check_model_shapes(TinySeq2Seq, seed=5)


class ReadsPadding(TinySeq2Seq):
    def encode(self, src, src_len):  # the initial state averages padded positions too
        state, memory = super().encode(src, src_len)
        return memory["enc_out"].mean(1), memory


class ForwardAttendsOnce(TinySeq2Seq):
    def forward(self, src, src_len, tgt_in):  # the context of s_0 reused at every position: step would differ
        state, memory = self.encode(src, src_len)
        context, _ = self.decoder.attention(state, memory["enc_out"], memory["mask"])
        logits = []
        for t in range(tgt_in.size(1)):
            state = self.decoder.rnn(torch.cat([self.decoder.embedding(tgt_in[:, t]), context], -1), state)
            logits.append(self.decoder.out(state))
        return torch.stack(logits, dim=1)


@pytest.mark.parametrize("make_model,message", [(ReadsPadding, "translated alone instead of in a batch"),
                                                (ForwardAttendsOnce, "forward and decoder.step disagree")])
def test_model_check_catches_a_model_that_reads_padding_or_whose_forward_is_not_its_step(make_model, message):
    """Is a model whose translation of a sentence depends on its batch's padding, or whose teacher-forced forward
    computes something else than step, caught (while TinySeq2Seq passes above)?"""
    with pytest.raises(AssertionError, match=message):
        check_model_shapes(make_model, seed=5)


def test_model_shape_check_catches_logits_over_the_source_vocabulary():
    """Is a decoder whose output layer has the source vocabulary's size caught?"""
    with pytest.raises(AssertionError, match=r"expected \(3, 41\)"):
        check_model_shapes(lambda src_v, tgt_v: TinySeq2Seq(src_v, src_v), seed=5)


def test_loss_check_passes_teacher_forcing_and_catches_off_by_one_and_padding():
    """Does the shifted, padding-ignoring loss pass, while feeding the targets and averaging over padding fail?"""
    check_teacher_forcing_loss(loss, TinySeq2Seq, seed=6)
    for bad in (loss_off_by_one, loss_counts_padding):
        with pytest.raises(AssertionError, match="the oracle|gives"):
            check_teacher_forcing_loss(bad, TinySeq2Seq, seed=6)


def loss_unsmoothed(model, src, src_len, tgt, label_smoothing=0.0):
    return loss(model, src, src_len, tgt)


def loss_in_train_mode(model, src, src_len, tgt, label_smoothing=0.0):
    model.train()
    return loss(model, src, src_len, tgt, label_smoothing)


def loss_in_logit_precision(model, src, src_len, tgt, label_smoothing=0.0):
    logits = model(src, src_len, tgt[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD, label_smoothing=label_smoothing)


@pytest.mark.parametrize("bad,message", [(loss_unsmoothed, "that is the unsmoothed loss"),
                                         (loss_in_train_mode, "put the model in train mode"),
                                         (loss_in_logit_precision, "compute the cross-entropy in float32")])
def test_loss_check_catches_ignored_smoothing_a_mode_change_and_low_precision(bad, message):
    """Is a loss that ignores label_smoothing, switches the model to train mode, or returns bfloat16 for bfloat16
    logits (the contract says float32) caught?"""
    with pytest.raises(AssertionError, match=message):
        check_teacher_forcing_loss(bad, TinySeq2Seq, seed=6)


# --- greedy decoding -------------------------------------------------------------------------------------
@torch.no_grad()
def greedy(model, src, src_len, max_len, pad_after_eos=True, exit_early=True, feed_back=True):
    """Correct greedy decoding, or with one of its three duties left out."""
    state, memory = model.encode(src, src_len)
    y, done, out = torch.full((src.size(0),), SOS), torch.zeros(src.size(0), dtype=torch.bool), []
    for _ in range(max_len):
        logits, state, _ = model.decoder.step(y if feed_back else torch.full((src.size(0),), SOS), state, memory)
        y = logits.argmax(-1).masked_fill(done & pad_after_eos, PAD)
        out.append(y)
        done |= y == EOS
        if exit_early and done.all():
            break
    return torch.stack(out, 1)


def test_greedy_check_passes_a_correct_decoder():
    """Does batched greedy decoding that pads after EOS and stops when all sentences ended pass?"""
    check_greedy_decode(greedy)


@pytest.mark.parametrize("fault,message", [("pad_after_eos", "only PAD"), ("exit_early", "decoding ran 50 steps"),
                                           ("feed_back", "its own previous prediction")])
def test_greedy_check_catches_no_stop_no_early_exit_and_no_feedback(fault, message):
    """Are decoders that ignore EOS, that always run max_len steps, or that never feed back their output caught?"""
    with pytest.raises(AssertionError, match=message):
        check_greedy_decode(lambda *args: greedy(*args, **{fault: False}))


# --- BLEU -------------------------------------------------------------------------------------------------
def ngrams(tokens, n):
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(hyps, refs, max_n=4, clip=True, brevity=True):
    matches, totals, c, r = [0] * max_n, [0] * max_n, 0, 0
    for h, ref in zip(hyps, refs):
        c, r = c + len(h), r + len(ref)
        for n in range(1, max_n + 1):
            hn, rn = ngrams(h, n), ngrams(ref, n)
            matches[n - 1] += sum(min(k, rn[g]) if clip else k for g, k in hn.items() if g in rn)
            totals[n - 1] += max(0, len(h) - n + 1)
    if min(matches) == 0:
        return 0.0
    bp = 1.0 if (c > r or not brevity) else math.exp(1 - r / c)
    return 100 * bp * math.exp(sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n)


def test_bleu_check_passes_a_correct_bleu():
    """Does BLEU with clipped counts and the brevity penalty agree with sacreBLEU on every case?"""
    check_bleu(bleu, seed=7)


@pytest.mark.parametrize("bad,message", [(lambda h, r, max_n=4: bleu(h, r, max_n, brevity=False), "brevity penalty"),
                                         (lambda h, r, max_n=4: bleu(h, r, max_n, clip=False), "clipped counts"),
                                         (lambda h, r, max_n=4: bleu(h, r), "with max_n=2")])
def test_bleu_check_catches_missing_brevity_penalty_unclipped_counts_and_a_fixed_order(bad, message):
    """Are BLEU without the brevity penalty, without clipping, or always BLEU-4 whatever max_n says caught, naming
    the case they fail?"""
    with pytest.raises(AssertionError, match=message):
        check_bleu(bad, seed=7)


# --- checkpoints -------------------------------------------------------------------------------------------
SRC, TGT = SPECIALS + ["ein", "Hund", "."], SPECIALS + ["a", "dog", ".", "runs"]


def test_translator_loads_with_its_vocabularies_and_translates(tmp_path):
    """Does a checkpoint saved with its vocabularies load into a fresh model that then translates raw sentences?"""
    torch.manual_seed(0)
    save_weights(TinySeq2Seq(len(SRC), len(TGT)), tmp_path / "m.pt", src_itos=SRC, tgt_itos=TGT)
    model, src_itos, tgt_itos = load_translator(TinySeq2Seq, tmp_path / "m.pt")
    assert (src_itos, tgt_itos) == (SRC, TGT)
    out = translate(model, ["ein Hund.", "Hund"], src_itos, tgt_itos)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
    assert all(w in TGT for s in out for w in tokenise(s)), out


def test_translator_with_swapped_vocabularies_is_refused_with_a_message(tmp_path):
    """Are weights saved with the vocabularies swapped refused, naming the vocabularies?"""
    save_weights(TinySeq2Seq(len(SRC), len(TGT)), tmp_path / "m.pt", src_itos=TGT, tgt_itos=SRC)
    with pytest.raises(CheckpointError, match="other vocabularies"):
        load_translator(TinySeq2Seq, tmp_path / "m.pt")


def test_translator_without_vocabularies_says_how_to_save_them(tmp_path):
    """Is a bare state_dict (no vocabularies) refused with the call that saves them?"""
    torch.save(TinySeq2Seq(len(SRC), len(TGT)).state_dict(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"not src_itos, tgt_itos; save them with save_weights"):
        load_translator(TinySeq2Seq, tmp_path / "m.pt")


def test_detokenise_inverts_tokenise_on_plain_sentences():
    """Does detokenise(tokenise(s)) give s back for a sentence with commas, hyphens and apostrophes?"""
    sentence = "A man's red t-shirt, two dogs (brown) and 3 cats."
    assert detokenise(tokenise(sentence)) == sentence


class _ReferenceLookup:
    """A cheat through the contract: ``encode`` keeps the source ids, ``step`` spells out the reference translation
    stored for exactly that source (and ends at once for any other)."""

    def __init__(self, pairs, src_itos, tgt_itos):
        from da6401.text import tokenise

        src, tgt = {t: i for i, t in enumerate(src_itos)}, {t: i for i, t in enumerate(tgt_itos)}
        self.table = {tuple(src[t] for t in tokenise(de)) + (EOS,): [tgt[t] for t in tokenise(en)] + [EOS]
                      for de, en in pairs}
        self.vocab = len(tgt_itos)
        self.decoder = self

    def eval(self):
        return self

    def encode(self, src, src_len):
        keys = [tuple(row[:n].tolist()) for row, n in zip(src, src_len)]
        return torch.zeros(len(keys), dtype=torch.long), keys

    def step(self, y_prev, state, memory):
        logits = torch.zeros(len(memory), self.vocab)
        for b, key in enumerate(memory):
            reference = self.table.get(key, [EOS])
            logits[b, reference[min(int(state[b]), len(reference) - 1)]] = 1.0
        return logits, state + 1, None


def test_a_lookup_of_the_public_references_aces_the_test_split_on_disk_but_not_as_graded():
    """Does a translator that hands back the stored reference score ~100 BLEU on test_2016_flickr as it is on disk,
    and nothing on the grader's order and perturbation of it?"""
    from sacrebleu.metrics import BLEU

    from da6401.data import load_multi30k
    from da6401.grader.seq2seq import graded_pairs, translate
    from da6401.text import SPECIALS, tokenise

    pairs = load_multi30k("test_2016_flickr")
    src_itos = SPECIALS + sorted({t for de, _ in pairs for t in tokenise(de)} | {t for de, _ in graded_pairs() for t in tokenise(de)})
    tgt_itos = SPECIALS + sorted({t for _, en in pairs for t in tokenise(en)})
    cheat = _ReferenceLookup(pairs, src_itos, tgt_itos)
    plain = BLEU().corpus_score(translate(cheat, [de for de, _ in pairs], src_itos, tgt_itos), [[en for _, en in pairs]])
    assert plain.score > 95, f"the cheat should work on the plain test split ({plain.score:.1f})"
    graded = graded_pairs()
    score = BLEU().corpus_score(translate(cheat, [de for de, _ in graded], src_itos, tgt_itos), [[en for _, en in graded]])
    assert score.score < 1.0, f"the lookup still scores {score.score:.1f} BLEU on the graded test set"


def test_the_notebook_vocabularies_must_be_the_training_splits(needs_data):
    """Do vocabularies built from the training pairs pass, and ones built from training and validation pairs
    fail, naming the vocabulary?"""
    from da6401.data import load_multi30k
    from da6401.grader.seq2seq import check_notebook_vocabularies

    train, val = load_multi30k("train"), load_multi30k("val")
    built = lambda pairs, side: vocab([tokenise(p[side]) for p in pairs], 3)  # noqa: E731
    check_notebook_vocabularies(built(train, 0), built(train, 1), 3)
    with pytest.raises(AssertionError, match="src_itos .* build it from train_pairs only"):
        check_notebook_vocabularies(built(train + val, 0), built(train, 1), 3)
