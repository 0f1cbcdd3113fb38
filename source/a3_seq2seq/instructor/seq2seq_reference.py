"""Reference solution for Assignment 3: attention encoder-decoder, Multi30k German -> English.

Laid out as the parts of the student notebook:

  Part 1  tokenise / detokenise          (regex, keeps case, splits punctuation off words)
  Part 2  Vocab                           (specials <pad>=0 <sos>=1 <eos>=2 <unk>=3, min_freq, JSON-able)
  Part 3  data pipeline                   (numericalise, batches of similar length, padding)
  Part 4  Encoder                         (embedding + bidirectional GRU over packed sequences)
  Part 5  BahdanauAttention               (additive attention with a padding mask)
  Part 6  Decoder                         (GRU fed [embedding; context], teacher forcing)
  Part 7  Seq2Seq                         (glue: encoder + decoder, loss)
  Part 8  greedy_decode                   (batched, stops each sentence at <eos>)
  Part 9  training loop                   (AdamW, warmup + cosine decay, label smoothing, clipping)
  Part 10 evaluation + checkpoint         (sacreBLEU on detokenised output; fp16 weights_only checkpoint)

Run:  DA6401_DATA_MIRROR=/work/shared/data python seq2seq_reference.py --out ckpt.pt
      python seq2seq_reference.py --eval-only ckpt.pt      (load + greedy-decode + score test set)
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import time
from collections import Counter

# libgomp's default busy-wait makes torch with 2 threads 10-20x slower whenever another process
# competes for the 2 cores (measured here: 1000-sentence greedy decode 47 s instead of 5 s;
# a training step 12-19 s instead of 1.1 s). PASSIVE waiting avoids that; it must be set
# before torch is imported (in a notebook: before the first `import torch`).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

PAD, SOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<sos>", "<eos>", "<unk>"]


# ----------------------------------------------------------------------------------------------
# Part 1: tokenisation
# ----------------------------------------------------------------------------------------------
# A word is a run of letters/digits, optionally joined by hyphens or apostrophes ("t-shirt",
# "woman's", "don't" stay whole: sacreBLEU's 13a tokeniser does not split them either).
# Every other non-space character (punctuation) is a token of its own.
# The course's tokeniser (da6401/text.py), which the notebook and the grader share; the research runs
# optionally lowercased the German source.
from da6401.text import detokenise, tokenise as _tokenise  # noqa: E402


def tokenise(sentence: str, lower: bool = False) -> list[str]:
    """da6401.text.tokenise, optionally on the lowercased sentence."""
    return _tokenise(sentence.lower() if lower else sentence)


# ----------------------------------------------------------------------------------------------
# Part 2: vocabulary
# ----------------------------------------------------------------------------------------------
class Vocab:
    """Token <-> id mapping. Ids 0..3 are <pad>, <sos>, <eos>, <unk>; the rest are the tokens
    seen at least `min_freq` times in training, most frequent first (ties alphabetical).
    Serialisable as a plain list of strings (`vocab.itos`), e.g. into JSON or a weights_only
    checkpoint; rebuild with Vocab(itos)."""

    def __init__(self, itos: list[str]):
        assert itos[:4] == SPECIALS, "the first four entries must be the specials"
        self.itos = list(itos)
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}

    @classmethod
    def build(cls, tokenised_sentences, min_freq: int = 2) -> "Vocab":
        """Inputs: tokenised_sentences, iterable of list[str]; min_freq, int.
        Returns: Vocab."""
        counts = Counter(tok for sent in tokenised_sentences for tok in sent)
        words = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        return cls(SPECIALS + words)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str], add_sos_eos: bool = False) -> list[int]:
        """Inputs: tokens, list[str]. Returns: list[int] (unknown tokens -> UNK=3;
        optionally wrapped as [SOS] + ids + [EOS])."""
        ids = [self.stoi.get(t, UNK) for t in tokens]
        return [SOS] + ids + [EOS] if add_sos_eos else ids

    def decode(self, ids: list[int], skip_unk: bool = False) -> list[str]:
        """Inputs: ids, list[int]. Returns: list[str], cut at the first EOS, with
        <pad>/<sos>/<eos> dropped (and <unk> too if skip_unk).
        For BLEU, skip_unk=True matters: sacreBLEU's 13a tokeniser turns "<unk>" into the three
        tokens "< unk >", so leaving it in costs 2-3 BLEU on Multi30k."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, SOS) and not (skip_unk and i == UNK):
                out.append(self.itos[i])
        return out


# ----------------------------------------------------------------------------------------------
# Part 3: data pipeline
# ----------------------------------------------------------------------------------------------
def numericalise(pairs, src_vocab: Vocab, tgt_vocab: Vocab, src_lower: bool = False):
    """Inputs: pairs, list of (de, en) raw strings.
    Returns: list of (src_ids, tgt_ids) with src_ids = de ids + [EOS] and
    tgt_ids = [SOS] + en ids + [EOS] (both list[int])."""
    data = []
    for de, en in pairs:
        src = src_vocab.encode(tokenise(de, lower=src_lower)) + [EOS]
        tgt = tgt_vocab.encode(tokenise(en), add_sos_eos=True)
        data.append((src, tgt))
    return data


def pad_batch(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs: seqs, list of B id lists.
    Returns: ids, LongTensor (B, L) padded with PAD=0 (L = longest); lengths, LongTensor (B,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    ids = torch.full((len(seqs), int(lengths.max())), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, lengths


def length_bucketed_batches(data, max_tokens: int, shuffle: bool = True, rng=None):
    """Group examples of similar length so that little compute is wasted on padding.

    Inputs: data, list of (src_ids, tgt_ids); max_tokens, int: cap on B * (longest target);
    Returns: list of batches, each a list of indices into data. With shuffle=True, the order
    within length ties and the order of the batches are random (new every call).
    """
    rng = rng or random
    idx = list(range(len(data)))
    if shuffle:
        rng.shuffle(idx)
    # sort by (target length, source length); shuffled before, so ties are in random order
    idx.sort(key=lambda i: (len(data[i][1]), len(data[i][0])))
    batches, cur, cur_max = [], [], 0
    for i in idx:
        length = max(len(data[i][0]), len(data[i][1]))
        new_max = max(cur_max, length)
        if cur and new_max * (len(cur) + 1) > max_tokens:
            batches.append(cur)
            cur, new_max = [], length
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    if shuffle:
        rng.shuffle(batches)
    return batches


def make_batch(data, indices):
    """Inputs: data, list of (src_ids, tgt_ids); indices, list[int] of length B.
    Returns: src, LongTensor (B, S); src_len, LongTensor (B,); tgt, LongTensor (B, T)
    (tgt starts with SOS and ends with EOS, then PAD)."""
    src, src_len = pad_batch([data[i][0] for i in indices])
    tgt, _ = pad_batch([data[i][1] for i in indices])
    return src, src_len, tgt


# ----------------------------------------------------------------------------------------------
# Part 4: encoder
# ----------------------------------------------------------------------------------------------
class Encoder(nn.Module):
    """Embedding + 1-layer bidirectional GRU (packed, so padding never enters the recurrence)."""

    def __init__(self, vocab_size: int, emb_dim: int, enc_hid: int, dec_hid: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.rnn = nn.GRU(emb_dim, enc_hid, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * enc_hid, dec_hid)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor):
        """Inputs: src, LongTensor (B, S); src_len, LongTensor (B,) true lengths (>= 1).
        Returns: outputs, FloatTensor (B, S, 2*enc_hid) (zeros at padded positions);
                 hidden, FloatTensor (B, dec_hid) = tanh(W [h_fwd_last; h_bwd_first]),
                 the decoder's initial state."""
        emb = self.dropout(self.embedding(src))
        packed = pack_padded_sequence(emb, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.rnn(packed)  # h: (2, B, enc_hid)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        hidden = torch.tanh(self.bridge(torch.cat([h[0], h[1]], dim=-1)))
        return out, hidden


# ----------------------------------------------------------------------------------------------
# Part 5: Bahdanau (additive) attention
# ----------------------------------------------------------------------------------------------
class BahdanauAttention(nn.Module):
    """score(s, h_j) = v^T tanh(W_q s + W_k h_j); weights = softmax over source positions,
    with padding positions set to -inf before the softmax (so they get exactly zero weight)."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.W_q = nn.Linear(query_dim, attn_dim, bias=False)
        self.W_k = nn.Linear(key_dim, attn_dim, bias=True)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def project_keys(self, enc_out: torch.Tensor) -> torch.Tensor:
        """Inputs: enc_out, FloatTensor (B, S, key_dim).
        Returns: FloatTensor (B, S, attn_dim) = W_k enc_out (computed once per batch)."""
        return self.W_k(enc_out)

    def forward(self, query, keys, enc_out, mask):
        """Inputs: query, FloatTensor (B, query_dim) (decoder state) or (B, T, query_dim)
                   (all decoder states at once);
                   keys, FloatTensor (B, S, attn_dim) from project_keys;
                   enc_out, FloatTensor (B, S, key_dim) (the values);
                   mask, BoolTensor (B, S), True at real tokens, False at padding.
        Returns: context, FloatTensor (B, key_dim) [or (B, T, key_dim)];
                 weights, FloatTensor (B, S) [or (B, T, S)], rows sum to 1, 0 at padding."""
        single = query.dim() == 2
        if single:
            query = query.unsqueeze(1)                              # (B, 1, Q)
        q = self.W_q(query).unsqueeze(2)                            # (B, T, 1, A)
        scores = self.v(torch.tanh(q + keys.unsqueeze(1))).squeeze(-1)   # (B, T, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(enc_out.dtype)  # (B, T, S)
        context = torch.bmm(weights, enc_out)                       # (B, T, key_dim)
        if single:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights


# ----------------------------------------------------------------------------------------------
# Part 6: decoder
# ----------------------------------------------------------------------------------------------
class Decoder(nn.Module):
    """One step: context c_t = attention(s_{t-1}, encoder outputs);
    s_t = GRUCell([emb(y_{t-1}); c_t], s_{t-1});
    logits_t = E_out · tanh(W_o [s_t; c_t; emb(y_{t-1})]) + b, where E_out is tied to the
    decoder's input embedding matrix (so W_o maps to emb_dim).

    With attention=False (baseline), c_t is the same fixed vector for every step: the encoder's
    final states [h_fwd_last; h_bwd_first] (no attention, Cho et al. 2014 style)."""

    def __init__(self, vocab_size: int, emb_dim: int, enc_hid: int, dec_hid: int,
                 attn_dim: int, dropout: float, attention: bool = True, tie_embeddings: bool = True):
        super().__init__()
        self.use_attention = attention
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.attention = BahdanauAttention(dec_hid, 2 * enc_hid, attn_dim) if attention else None
        self.rnn = nn.GRUCell(emb_dim + 2 * enc_hid, dec_hid)
        self.pre_out = nn.Linear(dec_hid + 2 * enc_hid + emb_dim, emb_dim)
        self.out = nn.Linear(emb_dim, vocab_size)
        if tie_embeddings:
            self.out.weight = self.embedding.weight
        self.dropout = nn.Dropout(dropout)

    def init_memory(self, enc_out, src_mask, fixed_context=None):
        """Precompute what every step needs.
        Inputs: enc_out (B, S, 2*enc_hid); src_mask BoolTensor (B, S);
                fixed_context (B, 2*enc_hid) for the no-attention baseline.
        Returns: dict memory."""
        keys = self.attention.project_keys(enc_out) if self.use_attention else None
        return {"enc_out": enc_out, "keys": keys, "mask": src_mask, "fixed": fixed_context}

    def step(self, y_prev, state, memory):
        """Inputs: y_prev, LongTensor (B,) previous target token; state, FloatTensor (B, dec_hid);
                   memory from init_memory.
        Returns: logits, FloatTensor (B, V); new state, FloatTensor (B, dec_hid);
                 attention weights, FloatTensor (B, S) (None without attention)."""
        emb = self.dropout(self.embedding(y_prev))                          # (B, E)
        if self.use_attention:
            context, weights = self.attention(state, memory["keys"], memory["enc_out"], memory["mask"])
        else:
            context, weights = memory["fixed"], None
        state = self.rnn(torch.cat([emb, context], dim=-1), state)         # (B, H)
        hidden = torch.tanh(self.pre_out(torch.cat([state, context, emb], dim=-1)))
        logits = self.out(self.dropout(hidden))                             # (B, V)
        return logits, state, weights

    def forward(self, tgt_in, state, memory):
        """Teacher forcing over a whole target prefix.
        Inputs: tgt_in, LongTensor (B, T) = target shifted right (starts with SOS);
                state, FloatTensor (B, dec_hid) initial state; memory from init_memory.
        Returns: logits, FloatTensor (B, T, V)."""
        # The GRU step is inherently sequential; the expensive vocab projection is done once for
        # all T steps at the end (one big matmul instead of T small ones).
        emb_all = self.dropout(self.embedding(tgt_in))                      # (B, T, E)
        states, contexts = [], []
        for t in range(tgt_in.size(1)):
            if self.use_attention:
                context, _ = self.attention(state, memory["keys"], memory["enc_out"], memory["mask"])
            else:
                context = memory["fixed"]
            state = self.rnn(torch.cat([emb_all[:, t], context], dim=-1), state)
            states.append(state)
            contexts.append(context)
        states = torch.stack(states, dim=1)                                 # (B, T, H)
        contexts = torch.stack(contexts, dim=1)                             # (B, T, 2*enc_hid)
        hidden = torch.tanh(self.pre_out(torch.cat([states, contexts, emb_all], dim=-1)))
        return self.out(self.dropout(hidden))                               # (B, T, V)


# ----------------------------------------------------------------------------------------------
# Part 7: the full model
# ----------------------------------------------------------------------------------------------
class Seq2Seq(nn.Module):
    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, emb_dim: int = 256,
                 enc_hid: int = 256, dec_hid: int = 512, attn_dim: int = 256,
                 dropout: float = 0.3, attention: bool = True, tie_embeddings: bool = True):
        super().__init__()
        self.config = dict(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size,
                           emb_dim=emb_dim, enc_hid=enc_hid, dec_hid=dec_hid, attn_dim=attn_dim,
                           dropout=dropout, attention=attention, tie_embeddings=tie_embeddings)
        self.encoder = Encoder(src_vocab_size, emb_dim, enc_hid, dec_hid, dropout)
        self.decoder = Decoder(tgt_vocab_size, emb_dim, enc_hid, dec_hid, attn_dim, dropout,
                               attention, tie_embeddings)
        # nn.Embedding's default N(0, 1) init gives logits of std ~sqrt(emb_dim) when the output
        # layer is tied to the embedding; N(0, 1/emb_dim) keeps the initial loss near log(V).
        for emb in (self.encoder.embedding, self.decoder.embedding):
            nn.init.normal_(emb.weight, std=emb_dim ** -0.5)
            with torch.no_grad():
                emb.weight[PAD].zero_()

    def encode(self, src, src_len):
        """Inputs: src, LongTensor (B, S); src_len, LongTensor (B,).
        Returns: initial decoder state (B, dec_hid) and the decoder memory dict."""
        enc_out, state = self.encoder(src, src_len)
        mask = src != PAD                                                   # (B, S)
        fixed = None
        if not self.decoder.use_attention:   # baseline: final fwd state + final bwd state
            enc_hid = enc_out.size(-1) // 2
            last = enc_out[torch.arange(src.size(0)), src_len - 1, :enc_hid]
            first = enc_out[:, 0, enc_hid:]
            fixed = torch.cat([last, first], dim=-1)
        return state, self.decoder.init_memory(enc_out, mask, fixed)

    def forward(self, src, src_len, tgt_in):
        """Inputs: src, LongTensor (B, S); src_len, LongTensor (B,); tgt_in, LongTensor (B, T)
                   (target shifted right: SOS y1 ... y_{T-1}).
        Returns: logits, FloatTensor (B, T, V) predicting y1 ... y_{T-1} EOS."""
        state, memory = self.encode(src, src_len)
        return self.decoder(tgt_in, state, memory)


def seq2seq_loss(logits, tgt_out, label_smoothing: float = 0.1):
    """Inputs: logits, FloatTensor (B, T, V); tgt_out, LongTensor (B, T) with PAD=0 ignored.
    Returns: scalar mean cross-entropy over non-pad target tokens."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), tgt_out.reshape(-1),
                           ignore_index=PAD, label_smoothing=label_smoothing)


# ----------------------------------------------------------------------------------------------
# Part 8: greedy decoding
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def greedy_decode(model: Seq2Seq, src, src_len, max_len: int = 60):
    """Batched greedy decoding.
    Inputs: src, LongTensor (B, S); src_len, LongTensor (B,); max_len, int: max output tokens.
    Returns: LongTensor (B, L) of predicted ids (L <= max_len), without SOS; every position after
    a sentence's first EOS is PAD. Stops early once all sentences have produced EOS."""
    model.eval()
    state, memory = model.encode(src, src_len)
    B = src.size(0)
    y = torch.full((B,), SOS, dtype=torch.long)
    finished = torch.zeros(B, dtype=torch.bool)
    out = []
    for _ in range(max_len):
        logits, state, _ = model.decoder.step(y, state, memory)
        y = logits.argmax(-1)
        y = y.masked_fill(finished, PAD)
        out.append(y)
        finished |= y == EOS
        if finished.all():
            break
    return torch.stack(out, dim=1)


def translate(model: Seq2Seq, sentences: list[str], src_vocab: Vocab, tgt_vocab: Vocab,
              batch_size: int = 200, src_lower: bool = False) -> list[str]:
    """Inputs: sentences, list[str] raw German. Returns: list[str] detokenised English."""
    src_ids = [src_vocab.encode(tokenise(s, lower=src_lower)) + [EOS] for s in sentences]
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))   # similar lengths together
    hyps = [None] * len(src_ids)
    for k in range(0, len(order), batch_size):
        idx = order[k:k + batch_size]
        src, src_len = pad_batch([src_ids[i] for i in idx])
        pred = greedy_decode(model, src, src_len, max_len=int(src_len.max()) * 2 + 10)
        for row, i in zip(pred.tolist(), idx):
            hyps[i] = detokenise(tgt_vocab.decode(row, skip_unk=True))
    return hyps


# ----------------------------------------------------------------------------------------------
# Part 10: evaluation and checkpoints
# ----------------------------------------------------------------------------------------------
def bleu(model, pairs, src_vocab, tgt_vocab, src_lower=False):
    """Inputs: pairs, list of (de, en) raw strings. Returns: sacrebleu BLEUScore of detokenised
    greedy translations against the raw (cased) references, 13a tokenisation."""
    import sacrebleu
    hyps = translate(model, [de for de, _ in pairs], src_vocab, tgt_vocab, src_lower=src_lower)
    return sacrebleu.corpus_bleu(hyps, [[en for _, en in pairs]]), hyps


def bleu_signature() -> str:
    """The sacreBLEU signature of corpus_bleu's defaults (nrefs:1|case:mixed|...|tok:13a|...)."""
    import sacrebleu
    metric = sacrebleu.BLEU()
    metric.corpus_score(["a"], [["a"]])   # the signature needs the number of references
    return str(metric.get_signature())


def save_checkpoint(path, model: Seq2Seq, src_vocab: Vocab, tgt_vocab: Vocab, extra=None):
    """fp16 state_dict + vocab lists + config: plain tensors/lists/dicts, loadable with
    torch.load(path, weights_only=True). Tied weights are stored once (out.weight dropped)."""
    sd = {k: v.half() for k, v in model.state_dict().items()
          if not (model.config["tie_embeddings"] and k == "decoder.out.weight")}
    torch.save({"model": sd, "config": model.config, "src_itos": src_vocab.itos,
                "tgt_itos": tgt_vocab.itos, "extra": extra or {}}, path)


def load_checkpoint(path):
    """Returns: (model in eval mode, fp32; src_vocab; tgt_vocab; extra dict)."""
    ck = torch.load(path, weights_only=True, map_location="cpu")
    model = Seq2Seq(**ck["config"])
    sd = {k: v.float() for k, v in ck["model"].items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and set(missing) <= {"decoder.out.weight"}, (missing, unexpected)
    model.eval()
    return model, Vocab(ck["src_itos"]), Vocab(ck["tgt_itos"]), ck.get("extra", {})


# ----------------------------------------------------------------------------------------------
# Part 9: training
# ----------------------------------------------------------------------------------------------
def lr_at(step: int, total: int, peak: float, warmup: int, final_frac: float = 0.02) -> float:
    """Linear warmup to `peak` over `warmup` steps, then cosine decay to peak*final_frac."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def average_state_dicts(sds):
    return {k: sum(sd[k].float() for sd in sds) / len(sds) for k in sds[0]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=4000, help="B * longest sequence per batch")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--emb", type=int, default=256)
    ap.add_argument("--enc-hid", type=int, default=256)
    ap.add_argument("--dec-hid", type=int, default=512)
    ap.add_argument("--attn-dim", type=int, default=256)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--min-freq", type=int, default=2)
    ap.add_argument("--src-lower", action="store_true", help="lowercase German source only")
    ap.add_argument("--no-attention", action="store_true")
    ap.add_argument("--no-tie", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward pass")
    ap.add_argument("--subset", type=int, default=0, help="use only the first N training pairs")
    ap.add_argument("--val-every", type=int, default=1, help="val BLEU every k epochs (0: never)")
    ap.add_argument("--val-from", type=int, default=1, help="first epoch with val BLEU")
    ap.add_argument("--avg-last", type=int, default=0, help="also try averaging last k epochs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="")
    ap.add_argument("--save-epoch1", default="", help="also save the epoch-1 checkpoint here")
    ap.add_argument("--eval-only", default="")
    ap.add_argument("--test", action="store_true", help="score the test set at the end")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    from da6401.data import load_multi30k
    import sacrebleu

    if args.eval_only:
        t0 = time.time()
        model, sv, tv, extra = load_checkpoint(args.eval_only)
        t_load = time.time() - t0
        lower = bool(extra.get("src_lower", False))
        test = load_multi30k("test_2016_flickr")
        t0 = time.time()
        score, hyps = bleu(model, test, sv, tv, lower)
        t_dec = time.time() - t0
        print(f"load {t_load:.2f}s  decode(1000 test) {t_dec:.2f}s  size "
              f"{os.path.getsize(args.eval_only) / 1e6:.2f} MB")
        print("TEST", score, "|", bleu_signature())
        for h, (_, en) in list(zip(hyps, test))[:5]:
            print("  HYP", h, "\n  REF", en)
        return

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    train_pairs = load_multi30k("train")
    if args.subset:
        train_pairs = train_pairs[:args.subset]
    val = load_multi30k("val")

    t_start = time.time()
    src_vocab = Vocab.build((tokenise(de, args.src_lower) for de, _ in train_pairs), args.min_freq)
    tgt_vocab = Vocab.build((tokenise(en) for _, en in train_pairs), args.min_freq)
    train = numericalise(train_pairs, src_vocab, tgt_vocab, args.src_lower)
    print(f"vocab de={len(src_vocab)} en={len(tgt_vocab)}  train={len(train)}", flush=True)

    model = Seq2Seq(len(src_vocab), len(tgt_vocab), args.emb, args.enc_hid, args.dec_hid,
                    args.attn_dim, args.dropout, attention=not args.no_attention,
                    tie_embeddings=not args.no_tie)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params {n_params / 1e6:.2f}M  config {model.config}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() > 1 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr,
                            betas=(0.9, 0.98))

    steps_per_epoch = len(length_bucketed_batches(train, args.max_tokens, True, random.Random(0)))
    total = steps_per_epoch * args.epochs
    print(f"steps/epoch ~{steps_per_epoch} total ~{total}", flush=True)
    step, history, snapshots, best = 0, [], [], (-1.0, None, 0)
    train_time = 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.time()
        tot_loss, tot_tok = 0.0, 0
        for indices in length_bucketed_batches(train, args.max_tokens, True, rng):
            src, src_len, tgt = make_batch(train, indices)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, args.lr, args.warmup)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = model(src, src_len, tgt[:, :-1])
            loss = seq2seq_loss(logits, tgt[:, 1:], args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            step += 1
            n = int((tgt[:, 1:] != PAD).sum())
            tot_loss += loss.item() * n
            tot_tok += n
        ep_time = time.time() - t0
        train_time += ep_time
        load1 = os.getloadavg()[0]
        msg = (f"epoch {epoch:2d} loss {tot_loss / tot_tok:.3f} time {ep_time:.1f}s "
               f"(train total {train_time:.0f}s, wall {time.time() - t_start:.0f}s) load1 {load1:.2f}")
        if args.avg_last and epoch > args.epochs - args.avg_last:
            snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        if args.val_every and epoch >= args.val_from and (epoch % args.val_every == 0 or epoch == args.epochs):
            t1 = time.time()
            vb, _ = bleu(model, val, src_vocab, tgt_vocab, args.src_lower)
            msg += f"  val BLEU {vb.score:.2f} ({time.time() - t1:.1f}s)"
            history.append((epoch, vb.score))
            if vb.score > best[0]:
                best = (vb.score, copy.deepcopy(model.state_dict()), epoch)
        print(msg, flush=True)
        if epoch == 1 and args.save_epoch1:
            save_checkpoint(args.save_epoch1, model, src_vocab, tgt_vocab,
                            {"epoch": 1, "src_lower": args.src_lower})

    final_sd = copy.deepcopy(model.state_dict())
    choice = ("last", final_sd, history[-1][1] if history else None)
    if best[1] is not None and best[0] > (choice[2] or -1):
        choice = (f"best epoch {best[2]}", best[1], best[0])
    if len(snapshots) > 1:
        model.load_state_dict(average_state_dicts(snapshots))
        vb, _ = bleu(model, val, src_vocab, tgt_vocab, args.src_lower)
        print(f"average of last {len(snapshots)} epochs: val BLEU {vb.score:.2f}", flush=True)
        if vb.score > (choice[2] or -1):
            choice = (f"avg last {len(snapshots)}", copy.deepcopy(model.state_dict()), vb.score)
    model.load_state_dict(choice[1])
    print(f"chosen: {choice[0]} (val BLEU {choice[2]})  total wall {time.time() - t_start:.0f}s",
          flush=True)
    if args.out:
        save_checkpoint(args.out, model, src_vocab, tgt_vocab,
                        {"chosen": choice[0], "val_bleu": choice[2], "src_lower": args.src_lower,
                         "train_seconds": train_time, "args": json.dumps(vars(args))})
        print(f"saved {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)")
    if args.test:
        # reload from the fp16 checkpoint, so the reported number is what the grader will see
        if args.out:
            model, src_vocab, tgt_vocab, _ = load_checkpoint(args.out)
        t1 = time.time()
        tb, hyps = bleu(model, load_multi30k("test_2016_flickr"), src_vocab, tgt_vocab, args.src_lower)
        print(f"TEST {tb} | {bleu_signature()}  (decode {time.time() - t1:.1f}s)")


if __name__ == "__main__":
    main()
