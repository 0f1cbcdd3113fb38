"""Hidden-test checks for A4's DCGAN notebook: generator and discriminator contracts, the GAN losses against
an oracle, the two update steps, and the quality of a submitted generator measured by the MNIST judge.

Contract (dcgan.ipynb): ``Generator()`` maps latent codes (N, G.latent_dim) to images (N, 1, 28, 28) in
[-1, 1]; ``Discriminator()`` maps such images to (N,) logits (no sigmoid); ``discriminator_loss(real_logits,
fake_logits)`` and ``generator_loss(fake_logits)`` return scalar tensors; ``d_step(G, D, opt_D, real, z)`` and
``g_step(G, D, opt_G, z)`` take one optimiser step and return the loss as a float.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from da6401.grader.checkpoints import count_parameters, load_into
from da6401.grader.checks import assert_close, call_student
from da6401.student.checks import LOSS_BAND
from da6401.grader.judge import judge_samples
from da6401.grader.models import _forward, assert_eval_consistent
from da6401.student.objects import is_instance, type_name, value_and_grad


def _unseen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(20_000 + seed)


def check_generator(make_generator: Callable[[], nn.Module], budget: int) -> nn.Module:
    """Fail unless ``make_generator()`` builds a DCGAN generator with the contract above.

    Checks: a ``latent_dim`` attribute; (N, latent_dim) -> (N, 1, 28, 28) in train and eval mode; at least one
    ConvTranspose2d and one BatchNorm layer; at most ``budget`` parameters; in eval mode a function of each code
    alone (deterministic, batch of one included); pixels in [-1, 1] even when every weight is scaled up tenfold
    (a tanh output keeps them there, a linear output does not), reaching both ends (a sigmoid does not reach -1);
    not clamped (see _assert_not_clamped); and ``make_generator(latent_dim=k)``, which the notebook's signature
    offers, takes codes of size k.
    """
    __tracebackhide__ = True
    G = make_generator()
    latent = getattr(G, "latent_dim", None)
    assert isinstance(latent, int) and latent > 0, (
        "the generator must keep its latent size as an int attribute `latent_dim` (the grader samples codes of that size)")
    n = count_parameters(G)
    assert n <= budget, f"{type_name(G)} has {n:,} trainable parameters; the budget is {budget:,}"
    for kind in (nn.ConvTranspose2d, (nn.BatchNorm1d, nn.BatchNorm2d)):
        assert any(is_instance(m, kind) for m in G.modules()), (
            f"{type_name(G)} has no {getattr(kind, '__name__', 'BatchNorm')} layer; the DCGAN guidelines ask for one")
    g = _unseen(1)
    for mode, batch in (("train", 5), ("eval", 3)):
        G.train(mode == "train")
        with torch.no_grad():
            out = _forward(G, torch.randn(batch, latent, generator=g))
        assert tuple(out.shape) == (batch, 1, 28, 28), (
            f"in {mode} mode, {batch} codes gave images of shape {tuple(out.shape)}; expected {(batch, 1, 28, 28)}")
        assert torch.isfinite(out).all() and out.abs().max() <= 1.0, (
            f"in {mode} mode the pixels span [{out.min():.3f}, {out.max():.3f}]; they must lie in [-1, 1]")
    assert_eval_consistent(G, torch.randn(5, latent, generator=g), "images")
    z = torch.randn(64, latent, generator=g)
    with torch.no_grad():
        out = _forward(_scaled(G, 10.0), 3 * z)
    assert out.abs().max() <= 1.0, (
        f"with its weights scaled up, the generator gives pixels up to {out.abs().max():.1f}: its output layer does "
        "not bound them to [-1, 1] (DCGAN ends the generator with tanh)")
    assert out.min() <= -0.99 and out.max() >= 0.99, (
        f"with its weights scaled up, the generator's pixels span only [{out.min():.3f}, {out.max():.3f}]: a tanh "
        "output reaches both -1 (the background of the scaled digits) and +1")
    _assert_not_clamped(G, z)
    other = latent // 2 + 3
    try:
        small = make_generator(latent_dim=other)
    except TypeError:   # a Generator without the argument: nothing to honour
        return G.eval()
    assert getattr(small, "latent_dim", None) == other, (
        f"Generator(latent_dim={other}).latent_dim is {getattr(small, 'latent_dim', None)!r}, not {other}")
    try:
        with torch.no_grad():
            out = _forward(small.eval(), torch.randn(2, other, generator=g))
    except Exception as e:
        raise AssertionError(f"Generator(latent_dim={other}) cannot take (2, {other}) codes ({type(e).__name__}: {e}); "
                             "build the first layer from the latent_dim argument") from None
    assert tuple(out.shape) == (2, 1, 28, 28), (
        f"Generator(latent_dim={other}) gave images of shape {tuple(out.shape)} for 2 codes; expected (2, 1, 28, 28)")
    return G.eval()


def _scaled(G: nn.Module, factor: float) -> nn.Module:
    """A copy of G in eval mode with every parameter multiplied by ``factor``."""
    loud = copy.deepcopy(G).eval()
    with torch.no_grad():
        for p in loud.parameters():
            p.mul_(factor)
    return loud


CLAMPED_SHARE = 0.5   # of the pixels beyond 0.9 in size, the share at exactly +-1 that betrays a clamp


@torch.no_grad()
def _assert_not_clamped(G: nn.Module, z: torch.Tensor) -> None:
    """Fail if the output is a clamp (hardtanh, clamp(-1, 1)) rather than tanh.

    With the weights scaled so that between 3 % and 15 % of the pixels exceed 0.9 in size, tanh gives exactly +-1 in
    float32 only to pre-activations beyond 8.7 in size, a few of those pixels at most, while a clamp gives +-1 to
    nearly all of them (measured on the reference at init: 0 % and 80 %). Not decided (passes) when no scale of
    the weights puts the output in that band.
    """
    __tracebackhide__ = True
    low, high = 0.0, 3.0   # log10 of the factor
    for _ in range(40):
        mid = (low + high) / 2
        out = _forward(_scaled(G, 10 ** mid), z)
        big = float((out.abs() > 0.9).float().mean())
        if 0.03 <= big <= 0.15:
            share = float((out.abs() == 1).float().mean()) / big
            assert share < CLAMPED_SHARE, (
                f"{share:.0%} of the pixels beyond 0.9 in size are exactly +-1: the output is clamped (hardtanh or "
                "clamp), not tanh, and its gradient is zero wherever the clamp bites; end with tanh")
            return
        low, high = (mid, high) if big < 0.03 else (low, mid)


def check_discriminator(make_discriminator: Callable[[], nn.Module], budget: int) -> nn.Module:
    """Fail unless ``make_discriminator()`` maps (N, 1, 28, 28) images to (N,) finite logits, uses strided
    convolutions (no pooling), LeakyReLU modules (if any) of slope 0.2, has no sigmoid at the end (the losses take
    logits), fits ``budget``, and in eval mode is a function of each image alone (a batch of one included)."""
    __tracebackhide__ = True
    D = make_discriminator()
    n = count_parameters(D)
    assert n <= budget, f"{type_name(D)} has {n:,} trainable parameters; the budget is {budget:,}"
    convs = [m for m in D.modules() if is_instance(m, nn.Conv2d)]
    assert any(max(m.stride) > 1 for m in convs), (
        f"{type_name(D)} has no strided Conv2d; DCGAN downsamples with strided convolutions")
    assert not any(is_instance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in D.modules()), (
        "DCGAN replaces pooling with strided convolutions")
    slopes = {m.negative_slope for m in D.modules() if is_instance(m, nn.LeakyReLU)}
    assert slopes <= {0.2}, (
        f"{type_name(D)}'s LeakyReLU slopes are {sorted(slopes)}; the DCGAN guidelines use 0.2 (PyTorch's default is 0.01)")
    g = _unseen(2)
    for mode, batch in (("train", 6), ("eval", 2)):
        D.train(mode == "train")
        x = torch.rand(batch, 1, 28, 28, generator=g) * 2 - 1
        with torch.no_grad():
            out = _forward(D, x)
        assert tuple(out.shape) == (batch,), (
            f"in {mode} mode, {batch} images gave an output of shape {tuple(out.shape)}; expected ({batch},): one logit each")
        assert torch.isfinite(out).all(), f"in {mode} mode the logits are not all finite"
    last = [m for m in D.modules() if len(list(m.children())) == 0][-1]
    assert not is_instance(last, nn.Sigmoid), "the discriminator ends with a sigmoid; return logits (the losses apply it)"
    assert_eval_consistent(D, torch.rand(5, 1, 28, 28, generator=g) * 2 - 1, "logits")
    return D.eval()


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    # The oracle: softplus form, exact for any logit.
    return F.softplus(-logits).mean() if target == 1.0 else F.softplus(logits).mean()


def _logit_batches(seed: int):
    g = _unseen(seed)
    yield "ordinary logits", torch.randn(7, generator=g) * 2, torch.randn(5, generator=g) * 2
    yield "confident logits (|x| up to 120)", torch.tensor([120.0, -100.0, 3.0, 40.0]), torch.tensor([-120.0, 90.0, -2.0])


def _scalar(fn, *args) -> tuple[torch.Tensor, list]:
    """The student's loss ``fn(*args)`` and its gradients w.r.t. each argument (computed where ``fn`` lives).

    Returns:
        (the loss, a scalar tensor; [d loss / d args[i], None where the loss does not depend on args[i]]).
    """
    __tracebackhide__ = True
    name = getattr(fn, "__name__", "the loss")
    out, grads = call_student(name, value_and_grad, fn, *args)
    assert isinstance(out, torch.Tensor) and out.dim() == 0, (
        f"{name} must return a scalar tensor, got {type_name(out)} {tuple(getattr(out, 'shape', ()))}")
    return out, grads


def check_discriminator_loss(discriminator_loss: Callable, seed: int = 0) -> None:
    """Fail unless discriminator_loss(real_logits, fake_logits) = BCE(real, 1) + BCE(fake, 0), each a mean over
    its own batch, on unseen logits (batches of different sizes, and confident logits where log(sigmoid) underflows),
    with the right gradient."""
    __tracebackhide__ = True
    for name, real, fake in _logit_batches(seed):
        got, (g_real, g_fake) = _scalar(discriminator_loss, real, fake)
        want = _bce(real, 1.0) + _bce(fake, 0.0)
        assert torch.isfinite(got), f"on {name} the loss is {got.item()}: compute it from logits stably (softplus or BCE with logits)"
        assert_close(got.item(), want.item(), tol=LOSS_BAND, name=f"discriminator loss on {name}")
        assert g_real is not None and g_fake is not None, "the loss does not depend on both batches of logits"
        assert_close(g_real.numpy(), -torch.sigmoid(-real).numpy() / len(real), tol=LOSS_BAND,
                     name=f"gradient w.r.t. the real logits ({name})")
        assert_close(g_fake.numpy(), torch.sigmoid(fake).numpy() / len(fake), tol=LOSS_BAND,
                     name=f"gradient w.r.t. the fake logits ({name})")


def check_generator_loss(generator_loss: Callable, seed: int = 0) -> None:
    """Fail unless generator_loss(fake_logits) is the non-saturating loss BCE(fake, 1) = mean softplus(-x)
    (not the saturating -mean softplus(x) = mean log(1 - D(G(z)))), on unseen and confident logits, with the
    right gradient (which is largest where the discriminator rejects the fakes)."""
    __tracebackhide__ = True
    for name, _, fake in _logit_batches(seed):
        got, (g_fake,) = _scalar(generator_loss, fake)
        assert torch.isfinite(got), f"on {name} the loss is {got.item()}: compute it from logits stably"
        want = _bce(fake, 1.0)
        saturating = -_bce(fake, 0.0)
        if abs(got.item() - saturating.item()) < LOSS_BAND * max(1.0, abs(saturating.item())):
            raise AssertionError(f"on {name} the generator loss equals mean log(1 - D(G(z))) = {saturating.item():.4f}: "
                                 "the saturating loss, whose gradient vanishes when D rejects the fakes; "
                                 "use the non-saturating -mean log D(G(z))")
        assert_close(got.item(), want.item(), tol=LOSS_BAND, name=f"generator loss on {name}")
        assert g_fake is not None, "the loss does not depend on the fake logits"
        assert_close(g_fake.numpy(), -torch.sigmoid(-fake).numpy() / len(fake), tol=LOSS_BAND,
                     name=f"gradient w.r.t. the fake logits ({name})")


class _TinyG(nn.Module):
    latent_dim = 3

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 28 * 28)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, 1, 28, 28)


class _TinyD(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(28 * 28, 1)

    def forward(self, x):
        return self.fc(x.flatten(1)).squeeze(1)


def _pair(seed: int):
    torch.manual_seed(30_000 + seed)
    return _TinyG(), _TinyD()


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _call_step(fn, *args) -> float:
    __tracebackhide__ = True
    name = getattr(fn, "__name__", "the step")
    out = call_student(name, fn, *args)
    assert type(out) is float, f"{name} must return the loss as a Python float, got {type_name(out)}"
    return out


def _oracle_step(model: nn.Module, loss_fn: Callable, logits: list[torch.Tensor], lr: float) -> float:
    """The oracle's step: plain SGD on ``model`` with the gradient of the student's ``loss_fn(*logits)``, where the
    logits are functions of ``model``'s parameters (nothing accumulated). The student's loss gives its value and
    its gradient w.r.t. the logits (computed where it lives); the chain rule through ``model`` is the grader's.

    Returns:
        The loss before the step.
    """
    __tracebackhide__ = True
    value, grads = _scalar(loss_fn, *[l.detach() for l in logits])
    upstream = [g if g is not None else torch.zeros_like(l) for l, g in zip(logits, grads)]
    params = list(model.parameters())
    param_grads = torch.autograd.grad(logits, params, grad_outputs=upstream, allow_unused=True)
    with torch.no_grad():
        for p, grad in zip(params, param_grads):
            if grad is not None:
                p -= lr * grad
    return value.item()


def _assert_step(module: nn.Module, before: list[torch.Tensor], oracle: nn.Module, what: str, tol: float = 1e-3):
    """Fail unless the update module received (its parameters now minus ``before``) is the oracle's update:
    relative error ||update - oracle's|| / ||oracle's|| at most ``tol``."""
    __tracebackhide__ = True
    for (name, p), b, q in zip(module.named_parameters(), before, oracle.parameters()):
        got, want = (p.detach() - b), (q.detach() - b)
        error = float((got - want).norm() / want.norm().clamp_min(1e-12))
        assert error <= tol, (f"{what}: the update of {name} differs from the oracle's by {error:.2e} of its size "
                              f"(band <= {tol:g}); stale gradients not cleared, or the wrong loss?")


_MODES = ((True, True), (False, True), (True, False))   # (G.training, D.training) the steps are handed, in turn


def _assert_modes(G: nn.Module, D: nn.Module, modes: tuple[bool, bool], name: str) -> None:
    __tracebackhide__ = True
    for model, what, was in ((G, "generator", modes[0]), (D, "discriminator", modes[1])):
        assert model.training == was, (
            f"{name} was handed the {what} in {'training' if was else 'eval'} mode and left it in "
            f"{'training' if model.training else 'eval'} mode: use the models in the mode they are in")


def check_d_step(d_step: Callable, discriminator_loss: Callable, seed: int = 0, steps: int = 3) -> None:
    """Fail unless ``steps`` calls of d_step(G, D, opt_D, real, z) on a small (G, D) pair with plain SGD each
    take the step the oracle takes: gradient of discriminator_loss(D(real), D(G(z))) w.r.t. D only, fresh each
    step (gradients cleared), G unchanged and without gradients (the fakes detached), both models left in the
    mode they were handed (see _MODES); and return the loss before the step.

    The oracle uses the student's own ``discriminator_loss`` (checked on its own by check_discriminator_loss),
    so a wrong loss costs the loss's points, not the step's too.
    """
    __tracebackhide__ = True
    G, D = _pair(seed)
    opt = torch.optim.SGD(D.parameters(), lr=0.5)
    g_before = _params(G)
    g = _unseen(10 + seed)
    for step in range(steps):
        real = torch.rand(6, 1, 28, 28, generator=g) * 2 - 1
        z = torch.randn(4, 3, generator=g)
        modes = _MODES[step % len(_MODES)]
        G.train(modes[0]), D.train(modes[1])
        D_oracle, d_before = copy.deepcopy(D), _params(D)
        G.zero_grad(set_to_none=True)
        loss = _call_step(d_step, G, D, opt, real, z)
        _assert_modes(G, D, modes, "d_step")
        for p, before in zip(G.parameters(), g_before):
            assert torch.equal(p.detach(), before), "d_step changed the generator; it must update the discriminator only"
        assert all(p.grad is None or not p.grad.any() for p in G.parameters()), (
            "d_step left gradients in the generator's parameters: detach the fakes, so that the discriminator's "
            "backward pass stops at them")
        want = _oracle_step(D_oracle, discriminator_loss, [D_oracle(real), D_oracle(G(z).detach())], lr=0.5)
        assert_close(loss, want, tol=LOSS_BAND, name=f"d_step's returned loss (step {step + 1})")
        _assert_step(D, d_before, D_oracle, f"d_step, step {step + 1}")


def check_g_step(g_step: Callable, generator_loss: Callable, seed: int = 0, steps: int = 3) -> None:
    """Fail unless ``steps`` calls of g_step(G, D, opt_G, z) with plain SGD on G each take the oracle's step:
    gradient of generator_loss(D(G(z))) (the student's own, as in check_d_step) w.r.t. G, fresh each step;
    D unchanged; modes left as handed; loss returned."""
    __tracebackhide__ = True
    G, D = _pair(seed + 1)
    opt = torch.optim.SGD(G.parameters(), lr=0.5)
    d_before = _params(D)
    g = _unseen(20 + seed)
    for step in range(steps):
        z = torch.randn(5, 3, generator=g)
        modes = _MODES[step % len(_MODES)]
        G.train(modes[0]), D.train(modes[1])
        G_oracle, g_before = copy.deepcopy(G), _params(G)
        loss = _call_step(g_step, G, D, opt, z)
        _assert_modes(G, D, modes, "g_step")
        for p, before in zip(D.parameters(), d_before):
            assert torch.equal(p.detach(), before), "g_step changed the discriminator; it must update the generator only"
        want = _oracle_step(G_oracle, generator_loss, [D(G_oracle(z))], lr=0.5)
        assert_close(loss, want, tol=LOSS_BAND, name=f"g_step's returned loss (step {step + 1})")
        _assert_step(G, g_before, G_oracle, f"g_step, step {step + 1}")


@torch.no_grad()
def generate(G: nn.Module, n: int = 5000, seed: int = 0, batch_size: int = 1000) -> torch.Tensor:
    """n images (n, 1, 28, 28) from G in eval mode, for latent codes drawn with the grader's seed."""
    __tracebackhide__ = True
    G = G.float().cpu().eval()
    latent = getattr(G, "latent_dim", None)
    assert type(latent) is int and 0 < latent <= 4096, (
        f"the generator's latent_dim must be an int in 1..4096 (the grader samples codes of that size), got {latent!r}")
    g = _unseen(100 + seed)
    z = torch.randn(n, latent, generator=g)
    return torch.cat([_forward(G, z[i:i + batch_size]) for i in range(0, n, batch_size)])


# The calibrated bars (grader_tests/test_generative_checks.py, test_thresholds.py; README's reference runs).
# Judge's Frechet distances, 5,000 images: real training digits 3; the reference 48.5; real digits blurred by a 3x3
# box 341, by a 5x5 box 948; an untrained generator about 1,600; uniform noise 1,940; threes only 990.
FID_BAR = 100.0
FID_BAR_MARGIN = 70.0       # the reference must be at most this (test_thresholds.py)
CLASS_FRACTION_BAR = 0.03   # every digit must be at least 3 % of the samples (uniform: 10 %; the reference: 5.4 % or more)
SAMPLES = 5000


def assert_sample_quality(G: nn.Module, fid_bar: float = FID_BAR, class_bar: float = CLASS_FRACTION_BAR,
                          n: int = SAMPLES):
    """Print what the MNIST judge sees in n samples of G and fail unless the Fréchet distance to the test set is
    at most ``fid_bar`` and every digit class holds at least ``class_bar`` of the samples.

    Returns:
        The :class:`~da6401.grader.judge.SampleStats`.
    """
    __tracebackhide__ = True
    stats = judge_samples(generate(G, n))
    fractions = ", ".join(f"{d}: {f:.1%}" for d, f in enumerate(stats.class_fractions))
    print(f"MNIST judge on {n} samples: Frechet distance {stats.fid:.2f} (bar: {fid_bar:g}); "
          f"inception score {stats.inception_score:.2f} of 10; confidence {stats.confidence:.3f}")
    print(f"digits the judge sees: {fractions}")
    assert stats.fid <= fid_bar, (
        f"the samples are at Frechet distance {stats.fid:.2f} from MNIST test digits in the judge's feature space; "
        f"it must be at most {fid_bar:g} (real training digits: about 3)")
    rare = [d for d, f in enumerate(stats.class_fractions) if f < class_bar]
    assert not rare, (f"digits {rare} are each under {class_bar:.0%} of the samples: the generator covers "
                      f"{stats.covered(class_bar)} of 10 classes (mode collapse?)")
    return stats


def load_generator(make_generator: Callable[[], nn.Module], path, budget: int = 1_000_000) -> nn.Module:
    """The student's generator class with the submitted weights (a CheckpointError says what is wrong), from a
    file that holds no more numbers than a generator within ``budget`` needs (no table of real digits beside it)."""
    __tracebackhide__ = True
    return load_into(make_generator(), path, budget=budget)


# --- generated, not retrieved (a generator that hands back real digits aces the judge) ------------------------
NEAR_COPY_BAR = 0.60     # largest fraction of samples closer to a real digit than the median real test digit is
                         # to the training set (a perfect generator: 0.5; the reference 0.22; copies of training
                         # digits with noise up to sigma 0.5, which the judge's distance already fails: >= 0.65)
TORTUOSITY_BAR = 6.0     # largest median length / chord of a straight path in z (the reference 2.4, another
                         # design 2.3; a lookup keyed by z, however coarse: 21 to 24)
JUMP_SHARE_BAR = 0.35    # largest median share of the path's length in its biggest step (the reference 0.07)


def _recentred_ink(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) in [-1, 1] -> (N, 784): the ink (pixels > 0), moved by whole pixels so that its centre of
    mass sits at the centre of the frame (as MNIST's own digits are), then blurred by a 3x3 box. Noise on the
    background, a shift of the digit and its exact grey levels count for little in this space."""
    ink = (images > 0).float()
    mass = ink.sum((2, 3)).clamp_min(1.0)
    rows, cols = torch.arange(28.0).view(1, 1, 28, 1), torch.arange(28.0).view(1, 1, 1, 28)
    dy = (13.5 - (ink * rows).sum((2, 3)) / mass).round().long().clamp(-8, 8).flatten().tolist()
    dx = (13.5 - (ink * cols).sum((2, 3)) / mass).round().long().clamp(-8, 8).flatten().tolist()
    ink = torch.stack([torch.roll(ink[i], (dy[i], dx[i]), (1, 2)) for i in range(len(ink))])
    return F.avg_pool2d(ink, 3, stride=1, padding=1).flatten(1)


def _nearest(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Euclidean distance from each row of ``queries`` to its nearest row of ``bank``."""
    squared = (bank ** 2).sum(1)[None]
    return torch.cat([((q ** 2).sum(1, keepdim=True) - 2 * q @ bank.T + squared).clamp_min(0).min(1).values.sqrt()
                      for q in queries.split(250)])


_REAL: dict = {}


def _real_digits() -> tuple[torch.Tensor, float, float]:
    """The real digits' bank (training and test, recentred ink) and two distances of held-apart real digits
    (the first 1,000 test digits to the training set): the median and the 5th percentile."""
    if not _REAL:
        from da6401.grader.judge import mnist_as_gan_images

        train, test = mnist_as_gan_images("train")[0], mnist_as_gan_images("test")[0]
        bank = _recentred_ink(torch.cat([train, test]))
        held = torch.minimum(_nearest(_recentred_ink(test[:1000]), bank[:len(train)]),
                             _nearest(_recentred_ink(test[:1000].flip(-1)), bank[:len(train)]))
        _REAL.update(bank=bank, median=float(held.median()), close=float(held.quantile(0.05)))
    return _REAL["bank"], _REAL["median"], _REAL["close"]


def preload() -> None:
    """Load the real digits' bank and the judge (the mutant runner's forks then share them)."""
    from da6401.grader.judge import preload as judge_preload

    _real_digits()
    judge_preload()


def assert_new_digits(G: nn.Module, n: int = 1000, bar: float = NEAR_COPY_BAR) -> float:
    """Fail unless G's samples are new images: at most ``bar`` of them may lie closer to some real MNIST digit
    (training or test, mirrored or not) than the median real test digit lies to the training set.

    Returns:
        That fraction.
    """
    __tracebackhide__ = True
    samples = generate(G, n, seed=7)
    bank, median, close = _real_digits()
    distance = torch.minimum(_nearest(_recentred_ink(samples), bank), _nearest(_recentred_ink(samples.flip(-1)), bank))
    fraction = float((distance < median).float().mean())
    copies = int((distance < close).sum())
    print(f"{fraction:.0%} of {n} samples lie closer to a real digit than real test digits typically do to the "
          f"training set (bar: {bar:.0%}; a generator that draws new digits: about 20 %); {copies} are closer than "
          f"all but 5 % of real test digits")
    assert fraction <= bar, (f"{fraction:.0%} of the samples are near-copies of real MNIST digits ({copies} of {n} "
                             f"closer than all but 5 % of real test digits are to the training set): a generator "
                             f"must draw new digits, not hand back the data set's")
    return fraction


def assert_smooth_in_z(G: nn.Module, paths: int = 64, steps: int = 24) -> tuple[float, float]:
    """Fail unless G's images change smoothly along straight lines in its latent space, as a network's do (a
    generator that looks its images up by z jumps at every step).

    For ``paths`` lines between two random codes, the images at ``steps + 1`` evenly spaced points: the path's
    length over the distance between its ends (its tortuosity) must have a median of at most ``TORTUOSITY_BAR``,
    and no single step may carry more than ``JUMP_SHARE_BAR`` of the length (median over paths).

    Returns:
        (median tortuosity, median largest step share).
    """
    __tracebackhide__ = True
    G = G.float().cpu().eval()
    latent = getattr(G, "latent_dim", None)
    assert type(latent) is int and 0 < latent <= 4096, f"latent_dim must be an int in 1..4096, got {latent!r}"
    g = _unseen(200)
    z0, z1 = torch.randn(paths, latent, generator=g), torch.randn(paths, latent, generator=g)
    t = torch.linspace(0, 1, steps + 1)
    z = (z0[:, None] * (1 - t)[None, :, None] + z1[:, None] * t[None, :, None]).reshape(-1, latent)
    with torch.no_grad():
        x = torch.cat([_forward(G, chunk) for chunk in z.split(500)]).reshape(paths, steps + 1, -1).double()
    step = (x[:, 1:] - x[:, :-1]).norm(dim=-1)
    length, chord = step.sum(1), (x[:, -1] - x[:, 0]).norm(dim=-1)
    tortuosity = float((length / chord.clamp_min(1e-9)).median())
    share = float((step.max(1).values / length.clamp_min(1e-9)).median())
    print(f"along straight lines in z: path length / distance between the ends {tortuosity:.2f} (bar: "
          f"{TORTUOSITY_BAR:g}), largest step {share:.0%} of the path (bar: {JUMP_SHARE_BAR:.0%})")
    assert tortuosity <= TORTUOSITY_BAR, (
        f"along a straight line in z the images travel {tortuosity:.1f} times the distance between its ends: they "
        "jump from one unrelated image to the next, as a lookup by z does, not change smoothly as a network's do")
    assert share <= JUMP_SHARE_BAR, (f"along straight lines in z, one step carries {share:.0%} of the path: the "
                                     "images jump instead of changing smoothly")
    return tortuosity, share
