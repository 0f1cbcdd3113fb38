"""Checks for the Vision Transformer notebook (A4, vit.ipynb), and the contract they follow.

The contract, stated in the notebook too:

- ``patchify(images, patch)``: (B, C, H, W) -> (B, N, C * patch * patch), N = (H / patch) * (W / patch);
  patches in row-major order (left to right, then top to bottom), each flattened in (C, ph, pw) order,
  i.e. ``F.unfold(images, patch, stride=patch).transpose(1, 2)``.
- ``attention(q, k, v)``: each (B, H, N, Dh) -> (out (B, H, N, Dh), weights (B, H, N, N)) with
  weights = softmax(q k^T / sqrt(Dh)) over the keys (last axis) and out = weights v.
- ``MultiHeadSelfAttention(dim, heads)``: ``qkv = nn.Linear(dim, 3 * dim)`` whose output is [q | k | v],
  each split into ``heads`` heads of dim // heads consecutive features; ``proj = nn.Linear(dim, dim)``
  after the heads are concatenated; forward (B, N, dim) -> (B, N, dim), keeping the attention weights
  (B, heads, N, N) of its last call in ``self.last_weights``. This is ``nn.MultiheadAttention``'s layout.
- ``Block(dim, heads, mlp_dim)`` with ``norm1, attn, norm2, mlp``: pre-norm,
  x = x + attn(norm1(x)), then x = x + mlp(norm2(x)).
- ``ViT()``: (B, 3, 32, 32) normalised images -> (B, 10) logits, with ``cls_token`` (1, 1, D) and
  ``pos_embedding`` (1, N + 1, D), both used.
- ``cls_attention_grid(weights)``: (B, H, 1 + g*g, 1 + g*g) -> (B, H, g, g), the class token's
  attention to each patch, weights[:, :, 0, 1:] laid out on the patch grid.

Every oracle here is PyTorch's own (``F.unfold``, ``F.scaled_dot_product_attention``,
``nn.MultiheadAttention``) or the student's own submodules, in float64 on unseen inputs.

A bug in ``patchify``, ``attention``, the multi-head attention or the block's wiring costs its own cell. So that
it does not also cost the model's, :func:`check_vit` runs with :func:`contract_parts` in place (the exact contract
versions of those four), and :func:`assert_checkpoint_accuracy` measures the student's model as it is and, only
when that falls below the bar, once more with them: a checkpoint trained with correct code and submitted beside a
later-broken function still counts; one trained with the bug does not become better.
"""
from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Callable, Iterator, MutableMapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from da6401.grader.checkpoints import load_into
from da6401.grader.checks import assert_close, assert_shape, call_student, rel_error, unseen_rng
from da6401.grader.models import accuracy, check_classifier
from da6401.student.objects import is_instance, own_attribute, type_name

TOL = 1e-6  # float64 throughout (inputs, weights): re-implementations agree to ~1e-12 even through softmax and
            # LayerNorm; between GOOD_BAND and FD_BAND, since einsum and unfold sum in other orders


CONFIDENT_BAND = 1e-3  # float32 scores of size ~300 are rounded by ~300 * 6e-8 = 2e-5, and softmax passes an absolute
                      # score error on as a relative one (summed in any order: measured up to 1e-5); a wrong softmax
                      # is off by O(1) or not finite


# --- the contract's exact versions ------------------------------------------------------------------
def reference_patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C * patch * patch): row-major patches, each in (C, ph, pw) order."""
    return F.unfold(images, patch, stride=patch).transpose(1, 2)


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention: (B, H, N, Dh) each -> (out (B, H, N, Dh), weights (B, H, N, N))."""
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    return weights @ v, weights


def prenorm_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The contract's pre-norm wiring of a block, through its own submodules."""
    x = x + block.attn(block.norm1(x))
    return x + block.mlp(block.norm2(x))


def reference_mhsa_forward(mhsa: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The contract's multi-head self-attention (B, N, dim) -> (B, N, dim), through the module's own ``qkv``,
    ``proj`` and ``heads`` (the notebook's skeleton sets ``self.heads``); keeps ``last_weights``."""
    b, n, d = x.shape
    q, k, v = mhsa.qkv(x).reshape(b, n, 3, mhsa.heads, d // mhsa.heads).permute(2, 0, 3, 1, 4)
    out, weights = reference_attention(q, k, v)
    mhsa.last_weights = weights.detach()
    return mhsa.proj(out.transpose(1, 2).reshape(b, n, d))


def _identity_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x


# The notebook's classes whose forward contract_parts replaces, and with what.
CONTRACT_FORWARDS = {"Block": prenorm_forward, "MultiHeadSelfAttention": reference_mhsa_forward}


@contextmanager
def _forward_of(cls, forward: Callable) -> Iterator[None]:
    """Within the block, instances of the class ``cls`` (the notebook's) run ``forward``; restored afterwards."""
    had = own_attribute(cls, "forward")
    old = getattr(cls, "forward") if had else None
    setattr(cls, "forward", forward)
    try:
        yield
    finally:
        if had:
            setattr(cls, "forward", old)
        else:
            delattr(cls, "forward")


@contextmanager
def contract_parts(namespace: MutableMapping, keep: tuple[str, ...] = ()) -> Iterator[None]:
    """Within the block, the notebook's ``patchify`` and ``attention`` are the contract's exact versions, and its
    ``MultiHeadSelfAttention`` and ``Block`` run the contract's computation through their own submodules
    (:data:`CONTRACT_FORWARDS`); everything is restored afterwards.

    Args:
        namespace: the notebook's namespace (``notebook`` in a test cell), where the model's code looks names up.
        keep: names of those parts left as the notebook has them (the part a check is about).
    """
    saved = {name: namespace[name] for name in ("patchify", "attention") if name in namespace and name not in keep}
    with ExitStack() as stack:
        for name, forward in CONTRACT_FORWARDS.items():
            if name in namespace and name not in keep:
                stack.enter_context(_forward_of(namespace[name], forward))
        try:
            if "patchify" in saved:
                namespace["patchify"] = reference_patchify
            if "attention" in saved:
                namespace["attention"] = reference_attention
            yield
        finally:
            for name, value in saved.items():
                namespace[name] = value


# --- Part 1: patches -----------------------------------------------------------------------------------
def check_patchify(patchify: Callable, seed: int) -> None:
    """Fail unless ``patchify`` matches the contract on unseen sizes (channels, patch, non-square images)."""
    __tracebackhide__ = True
    rng = unseen_rng(seed)
    for b, c, h, w, p in ((2, 3, 8, 8, 4), (3, 2, 12, 6, 3), (1, 5, 4, 10, 2)):
        x = torch.from_numpy(rng.standard_normal((b, c, h, w)))
        got = call_student(f"patchify(images of shape {(b, c, h, w)}, {p})", patchify, x.clone(), p)
        want = reference_patchify(x, p)
        assert_shape(got, tuple(want.shape), f"patchify(images of shape {(b, c, h, w)}, {p})")
        if rel_error(got.detach(), want) <= TOL:
            continue
        hw_c = x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 4, 5, 1).reshape(want.shape)  # (ph, pw, C)
        col_major = x.unfold(2, p, p).unfold(3, p, p).permute(0, 3, 2, 1, 4, 5).reshape(want.shape)
        hint = (" — each patch is flattened in (ph, pw, C) order; the contract is (C, ph, pw), as F.unfold gives"
                if rel_error(got.detach(), hw_c) <= TOL else
                " — the patches are in column-major order (top to bottom first); the contract is row-major: "
                "left to right along the first row of patches, then the next row"
                if rel_error(got.detach(), col_major) <= TOL else "")
        assert_close(got.detach(), want, tol=TOL, name=f"patchify(images of shape {(b, c, h, w)}, {p}){hint}")


# --- Part 2: attention ---------------------------------------------------------------------------------
def check_attention(attention: Callable, seed: int) -> None:
    """Fail unless ``attention`` equals ``F.scaled_dot_product_attention`` (output) and softmax(qk^T/sqrt(Dh))
    over the keys (weights) on unseen inputs of several shapes, in float64."""
    __tracebackhide__ = True
    rng = unseen_rng(seed)
    for b, h, n, d in ((2, 3, 5, 8), (1, 2, 7, 16), (3, 1, 4, 5)):
        q, k, v = (torch.from_numpy(rng.standard_normal((b, h, n, d)) * 1.5) for _ in range(3))
        name = f"attention(q, k, v of shape {(b, h, n, d)})"
        result = call_student(name, attention, q.clone(), k.clone(), v.clone())
        assert isinstance(result, tuple) and len(result) == 2, f"{name} must return (out, weights)"
        out, weights = (r.detach() for r in result)
        want_out = F.scaled_dot_product_attention(q, k, v)
        want_w = reference_attention(q, k, v)[1]
        assert_shape(weights, (b, h, n, n), f"{name}: weights")
        assert_shape(out, (b, h, n, d), f"{name}: out")
        sums = weights.sum(-1)
        if rel_error(sums, torch.ones_like(sums)) > TOL:
            hint = (" They sum to 1 over the queries (axis -2): softmax must run over the keys, the last axis."
                    if rel_error(weights.sum(-2), torch.ones_like(sums)) <= TOL else "")
            raise AssertionError(f"{name}: each query's weights must sum to 1 over the keys; row sums range over "
                                 f"[{sums.min():.4f}, {sums.max():.4f}].{hint}")
        unscaled = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        hint = (" — they are softmax(q k^T), without the 1/sqrt(Dh) scaling"
                if rel_error(weights, unscaled) <= TOL else "")
        assert_close(weights, want_w, tol=TOL, name=f"{name}: weights vs softmax(q k^T / sqrt(Dh)){hint}")
        assert_close(out, want_out, tol=TOL, name=f"{name}: out vs F.scaled_dot_product_attention")
    # Confident attention in float32, the dtype training uses: scores up to about 300, where exp overflows (at 88).
    q, k, v = (torch.from_numpy(rng.standard_normal((2, 2, 6, 8)) * s).float() for s in (8.0, 8.0, 1.0))
    name = "attention(float32 q, k, v with scores up to about 300)"
    out, weights = (r.detach() for r in call_student(name, attention, q.clone(), k.clone(), v.clone()))
    assert torch.isfinite(weights).all() and torch.isfinite(out).all(), (
        f"{name}: the weights are not all finite: subtract each row's maximum score before exp (torch.softmax does)")
    want_out, want_w = reference_attention(q.double(), k.double(), v.double())
    assert_close(weights.double(), want_w, tol=CONFIDENT_BAND, name=f"{name}: weights")
    assert_close(out.double(), want_out, tol=CONFIDENT_BAND, name=f"{name}: out")


def check_multi_head(make_mhsa: Callable, seed: int, namespace: MutableMapping | None = None) -> None:
    """Fail unless ``make_mhsa(dim, heads)`` computes what ``nn.MultiheadAttention(dim, heads, batch_first=True)``
    computes with the same weights copied into its ``qkv`` and ``proj``, and keeps the per-head weights of its
    last call in ``last_weights``.

    Args:
        namespace: the notebook's globals; when given, its ``attention`` is the contract's exact version
            during the check, so a bug there is charged to the attention cell only.
    """
    __tracebackhide__ = True
    rng = unseen_rng(seed)
    ctx = contract_parts(namespace, keep=("MultiHeadSelfAttention",)) if namespace is not None else nullcontext()
    with ctx:
        for dim, heads, b, n in ((12, 3, 2, 5), (16, 2, 3, 4), (24, 4, 1, 9)):
            name = f"MultiHeadSelfAttention({dim}, {heads})"
            mhsa = call_student(name, make_mhsa, dim, heads)
            for attr, shape in (("qkv", (3 * dim, dim)), ("proj", (dim, dim))):
                layer = getattr(mhsa, attr, None)
                assert is_instance(layer, nn.Linear) and tuple(layer.weight.shape) == shape and layer.bias is not None, (
                    f"{name}.{attr} must be an nn.Linear with weight of shape {shape} and a bias")
            torch.manual_seed(int(rng.integers(1 << 30)))
            ref = nn.MultiheadAttention(dim, heads, batch_first=True).double().eval()
            with torch.no_grad():
                for p in ref.parameters():
                    p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)) * 0.4))
            mhsa = mhsa.double().eval()
            with torch.no_grad():
                mhsa.qkv.weight.copy_(ref.in_proj_weight)
                mhsa.qkv.bias.copy_(ref.in_proj_bias)
                mhsa.proj.weight.copy_(ref.out_proj.weight)
                mhsa.proj.bias.copy_(ref.out_proj.bias)
            x = torch.from_numpy(rng.standard_normal((b, n, dim)))
            with torch.no_grad():
                got = call_student(f"{name} on a batch of shape {(b, n, dim)}", mhsa, x.clone())
                want, want_w = ref(x, x, x, need_weights=True, average_attn_weights=False)
            assert_shape(got, (b, n, dim), name)
            assert_close(got.detach(), want, tol=TOL, name=f"{name} vs nn.MultiheadAttention with the same weights")
            kept = getattr(mhsa, "last_weights", None)
            assert kept is not None, f"{name} must keep its last attention weights in self.last_weights"
            assert_close(kept.detach(), want_w, tol=TOL, name=f"{name}.last_weights (B, heads, N, N)")
        # A second call, with gradients on (as in training): last_weights is that call's, and detached.
        x = torch.from_numpy(rng.standard_normal((b + 1, n, dim)))
        call_student(f"{name} on a second batch of shape {(b + 1, n, dim)}", mhsa, x.clone())
        with torch.no_grad():
            want_w = ref(x, x, x, need_weights=True, average_attn_weights=False)[1]
        kept = getattr(mhsa, "last_weights", None)
        assert kept is not None and tuple(kept.shape) == tuple(want_w.shape), (
            f"after a second call on a batch of shape {(b + 1, n, dim)}, {name}.last_weights has shape "
            f"{tuple(getattr(kept, 'shape', ()))}, not {tuple(want_w.shape)}: keep the weights of every call, the last one wins")
        assert_close(kept.detach(), want_w, tol=TOL, name=f"{name}.last_weights after a second call")
        assert not kept.requires_grad, (
            f"{name}.last_weights still requires grad: keep them detached (weights.detach()), or they hold the "
            "whole forward graph in memory")


# --- Part 3: blocks and the model -----------------------------------------------------------------------
def check_block(make_block: Callable, seed: int) -> None:
    """Fail unless ``make_block(dim, heads, mlp_dim)`` has ``norm1, attn, norm2, mlp`` and wires them pre-norm:
    x + attn(norm1(x)), then + mlp(norm2(.)), checked with its own (randomised) submodules in float64."""
    __tracebackhide__ = True
    rng = unseen_rng(seed)
    for dim, heads, mlp_dim in ((12, 3, 24), (16, 4, 20)):
        name = f"Block({dim}, {heads}, {mlp_dim})"
        block = call_student(name, make_block, dim, heads, mlp_dim)
        missing = [a for a in ("norm1", "attn", "norm2", "mlp") if not is_instance(getattr(block, a, None), nn.Module)]
        assert not missing, f"{name} has no submodule(s) {', '.join(missing)}; the contract names them norm1, attn, norm2, mlp"
        block = block.double().eval()
        with torch.no_grad():
            for p in block.parameters():  # LayerNorm's initial 1 and 0 would hide where the norm sits
                p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)) * 0.5 + (1.0 if p.ndim == 1 else 0.0)))
        x = torch.from_numpy(rng.standard_normal((2, 6, dim)))
        with torch.no_grad():
            got = call_student(f"{name} on a batch of shape {(2, 6, dim)}", block, x.clone())
            want = prenorm_forward(block, x)
            post = block.norm1(x + block.attn(x))
            post = block.norm2(post + block.mlp(post))
        assert_shape(got, (2, 6, dim), name)
        hint = (" — this is the post-norm wiring (normalise after adding the residual); the contract is pre-norm, "
                "x + attn(norm1(x))" if rel_error(got, post) <= TOL else "")
        assert_close(got, want, tol=TOL, name=f"{name} vs x + attn(norm1(x)), then + mlp(norm2(.)){hint}")


def check_vit(make_model: Callable, budget: int, seed: int, num_patches: int = 64,
              namespace: MutableMapping | None = None) -> nn.Module:
    """Fail unless ``make_model()`` is a classifier of (B, 3, 32, 32) images within ``budget`` (checks of
    :func:`~da6401.grader.models.check_classifier`) whose ``cls_token`` (1, 1, D) and ``pos_embedding``
    (1, num_patches + 1, D) both change the logits, which classifies the class token's final state (with every
    block the identity, the logits do not depend on the image), and which honours ``patch`` and ``num_classes``.

    Args:
        namespace: the notebook's globals; when given, the check runs within :func:`contract_parts`, so a bug in
            a part of the model costs that part's cell, not this one too.
    """
    __tracebackhide__ = True
    with contract_parts(namespace) if namespace is not None else nullcontext():
        model = check_classifier(make_model, (3, 32, 32), num_classes=10, budget=budget, required=(nn.LayerNorm,))
        _assert_tokens(model, num_patches)
        rng = unseen_rng(seed)
        model = model.double().eval()
        x = torch.from_numpy(rng.standard_normal((3, 3, 32, 32)))
        cls, pos = model.cls_token, model.pos_embedding
        with torch.no_grad():
            before = model(x)
            for param, what in ((pos, "pos_embedding"), (cls, "cls_token")):
                saved = param.detach().clone()
                param.add_(torch.from_numpy(rng.standard_normal(tuple(param.shape))))
                after = model(x)
                param.copy_(saved)
                assert rel_error(after, before) > 1e-3, (
                    f"changing {what} does not change the logits: the model must add it to the tokens"
                    + (" (without position embeddings a transformer sees a bag of patches: it cannot tell where each is)"
                       if what == "pos_embedding" else ""))
            if namespace is not None and "Block" in namespace:
                with _forward_of(namespace["Block"], _identity_forward):
                    a, b = model(x), model(torch.from_numpy(rng.standard_normal((3, 3, 32, 32))))
                assert rel_error(a, b) <= TOL, (
                    "with every block the identity, the logits still depend on the image: the head must classify the "
                    "class token's final state (position 0), which only attention connects to the patches")
        _assert_arguments_honoured(make_model)
    return model.float()


def _assert_tokens(model: nn.Module, num_patches: int) -> None:
    """Fail unless ``model`` has the contract's ``cls_token`` (1, 1, D) and ``pos_embedding`` (1, num_patches + 1, D)."""
    __tracebackhide__ = True
    cls, pos = getattr(model, "cls_token", None), getattr(model, "pos_embedding", None)
    assert isinstance(cls, nn.Parameter) and cls.dim() == 3 and cls.shape[:2] == (1, 1), (
        f"{type_name(model)}.cls_token must be an nn.Parameter of shape (1, 1, D)")
    d = cls.shape[-1]
    assert isinstance(pos, nn.Parameter) and tuple(pos.shape) == (1, num_patches + 1, d), (
        f"{type_name(model)}.pos_embedding must be an nn.Parameter of shape {(1, num_patches + 1, d)} "
        f"(one row per patch and one for the class token), got "
        f"{tuple(pos.shape) if isinstance(pos, torch.Tensor) else type_name(pos)}")


def _assert_arguments_honoured(make_model: Callable) -> None:
    """Fail unless ``make_model(patch=8, num_classes=7)``, which the notebook's signature offers, cuts 16 patches
    and gives 7 logits (skipped for a class that takes no such arguments)."""
    __tracebackhide__ = True
    try:
        model = make_model(patch=8, num_classes=7)
    except TypeError:
        return
    _assert_tokens(model, 16)
    with torch.no_grad():
        try:
            out = model.eval()(torch.zeros(2, 3, 32, 32))
        except Exception as e:
            raise AssertionError(f"ViT(patch=8, num_classes=7) fails on two images ({type(e).__name__}: {e}): "
                                 "build and run the model from its arguments") from None
    assert tuple(out.shape) == (2, 7), (
        f"ViT(patch=8, num_classes=7) gave logits of shape {tuple(out.shape)} for two images; expected (2, 7)")


# --- Part 5: attention maps ------------------------------------------------------------------------------
def check_attention_grid(cls_attention_grid: Callable, seed: int) -> None:
    """Fail unless ``cls_attention_grid(weights)`` returns weights[:, :, 0, 1:] on the (g, g) patch grid."""
    __tracebackhide__ = True
    rng = unseen_rng(seed)
    for b, h, g in ((2, 3, 4), (1, 2, 5)):
        n = g * g + 1
        w = torch.from_numpy(rng.random((b, h, n, n)))
        name = f"cls_attention_grid(weights of shape {(b, h, n, n)})"
        got = call_student(name, cls_attention_grid, w.clone())
        assert_shape(got, (b, h, g, g), name)
        want = w[:, :, 0, 1:].reshape(b, h, g, g)
        column = w[:, :, 1:, 0].reshape(b, h, g, g)
        hint = (" — this is column 0 (how much each patch attends to the class token); the map is row 0, "
                "how much the class token attends to each patch" if rel_error(got, column) <= TOL else "")
        assert_close(got, want, tol=TOL, name=f"{name} vs weights[:, :, 0, 1:] on the patch grid{hint}")


# --- Part 4: the checkpoint -------------------------------------------------------------------------------
def preload() -> None:
    """Build the graded test set (the mutant runner's forks then share it)."""
    from da6401.grader.cifar import preload as cifar_preload

    cifar_preload()


def normalised_test_set() -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 CIFAR-10 test images as the grader measures a model on them (A2's contract: [0, 1], training
    statistics; the grader's order and perturbation, :func:`da6401.grader.cifar.graded_test_set`)."""
    from da6401.grader.cifar import graded_test_set

    return graded_test_set()


def assert_checkpoint_accuracy(make_model: Callable[[], nn.Module], path: str, bar: float, budget: int,
                               namespace: MutableMapping | None = None) -> float:
    """Load ``path`` into ``make_model()``, print its CIFAR-10 test accuracy and fail below ``bar``.

    When the model as submitted falls below ``bar`` and ``namespace`` (the notebook's globals) is given,
    it is measured once more within :func:`contract_parts`; it passes if that clears the bar (the
    broken function already lost its own cell).

    Returns:
        The accuracy that was judged.
    """
    __tracebackhide__ = True
    model = load_into(make_model(), path, budget=budget)
    from da6401.grader.checkpoints import assert_parameter_budget

    assert_parameter_budget(model, budget)
    x, y = normalised_test_set()
    acc = accuracy(model, x, y)
    print(f"CIFAR-10 test accuracy: {acc:.4f} (bar: {bar:.2f})")
    if acc < bar and namespace is not None:
        with contract_parts(namespace):
            repaired = accuracy(model, x, y)
        print(f"with the contract's patchify, attention, multi-head attention and pre-norm wiring in place of yours: "
              f"{repaired:.4f}")
        if repaired >= bar:
            print("the checkpoint clears the bar with the contract's versions; the broken part lost its own cell")
            return repaired
    assert acc >= bar, f"CIFAR-10 test accuracy of the checkpoint is {acc:.4f}; it must be at least {bar:.2f}"
    return acc
