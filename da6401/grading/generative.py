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

from da6401.grading.checkpoints import count_parameters, load_into
from da6401.grading.checks import assert_close, call_student
from da6401.grading.judge import judge_samples
from da6401.grading.models import _forward


def _unseen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(20_000 + seed)


def check_generator(make_generator: Callable[[], nn.Module], budget: int) -> nn.Module:
    """Fail unless ``make_generator()`` builds a DCGAN generator with the contract above.

    Checks: a ``latent_dim`` attribute; (N, latent_dim) -> (N, 1, 28, 28) in train and eval mode; at least one
    ConvTranspose2d and one BatchNorm layer; at most ``budget`` parameters; pixels in [-1, 1] even when every
    weight is scaled up tenfold (a tanh output keeps them there, a linear output does not).
    """
    __tracebackhide__ = True
    G = make_generator()
    latent = getattr(G, "latent_dim", None)
    assert isinstance(latent, int) and latent > 0, (
        "the generator must keep its latent size as an int attribute `latent_dim` (the grader samples codes of that size)")
    n = count_parameters(G)
    assert n <= budget, f"{type(G).__name__} has {n:,} trainable parameters; the budget is {budget:,}"
    for kind in (nn.ConvTranspose2d, (nn.BatchNorm1d, nn.BatchNorm2d)):
        assert any(isinstance(m, kind) for m in G.modules()), (
            f"{type(G).__name__} has no {getattr(kind, '__name__', 'BatchNorm')} layer; the DCGAN guidelines ask for one")
    g = _unseen(1)
    for mode, batch in (("train", 5), ("eval", 3)):
        G.train(mode == "train")
        with torch.no_grad():
            out = _forward(G, torch.randn(batch, latent, generator=g))
        assert tuple(out.shape) == (batch, 1, 28, 28), (
            f"in {mode} mode, {batch} codes gave images of shape {tuple(out.shape)}; expected {(batch, 1, 28, 28)}")
        assert torch.isfinite(out).all() and out.abs().max() <= 1.0, (
            f"in {mode} mode the pixels span [{out.min():.3f}, {out.max():.3f}]; they must lie in [-1, 1]")
    loud = copy.deepcopy(G).eval()
    with torch.no_grad():
        for p in loud.parameters():
            p.mul_(10.0)
        out = _forward(loud, 3 * torch.randn(64, latent, generator=g))
    assert out.abs().max() <= 1.0, (
        f"with its weights scaled up, the generator gives pixels up to {out.abs().max():.1f}: its output layer does "
        "not bound them to [-1, 1] (DCGAN ends the generator with tanh)")
    return G.eval()


def check_discriminator(make_discriminator: Callable[[], nn.Module], budget: int) -> nn.Module:
    """Fail unless ``make_discriminator()`` maps (N, 1, 28, 28) images to (N,) finite logits, uses strided
    convolutions (no pooling), has no sigmoid at the end (the losses take logits) and fits ``budget``."""
    __tracebackhide__ = True
    D = make_discriminator()
    n = count_parameters(D)
    assert n <= budget, f"{type(D).__name__} has {n:,} trainable parameters; the budget is {budget:,}"
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert any(max(m.stride) > 1 for m in convs), (
        f"{type(D).__name__} has no strided Conv2d; DCGAN downsamples with strided convolutions")
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in D.modules()), (
        "DCGAN replaces pooling with strided convolutions")
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
    assert not isinstance(last, nn.Sigmoid), "the discriminator ends with a sigmoid; return logits (the losses apply it)"
    return D.eval()


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    # The oracle: softplus form, exact for any logit.
    return F.softplus(-logits).mean() if target == 1.0 else F.softplus(logits).mean()


def _logit_batches(seed: int):
    g = _unseen(seed)
    yield "ordinary logits", torch.randn(7, generator=g) * 2, torch.randn(5, generator=g) * 2
    yield "confident logits (|x| up to 120)", torch.tensor([120.0, -100.0, 3.0, 40.0]), torch.tensor([-120.0, 90.0, -2.0])


def _scalar(fn, *args) -> torch.Tensor:
    __tracebackhide__ = True
    out = call_student(getattr(fn, "__name__", "the loss"), fn, *args)
    assert isinstance(out, torch.Tensor) and out.dim() == 0, (
        f"{getattr(fn, '__name__', 'the loss')} must return a scalar tensor, got {type(out).__name__} "
        f"{tuple(getattr(out, 'shape', ()))}")
    return out


def check_discriminator_loss(discriminator_loss: Callable, seed: int = 0) -> None:
    """Fail unless discriminator_loss(real_logits, fake_logits) = BCE(real, 1) + BCE(fake, 0), each a mean over
    its own batch, on unseen logits (batches of different sizes, and confident logits where log(sigmoid) underflows),
    with the right gradient."""
    __tracebackhide__ = True
    for name, real, fake in _logit_batches(seed):
        real, fake = real.clone().requires_grad_(), fake.clone().requires_grad_()
        got = _scalar(discriminator_loss, real, fake)
        want = _bce(real.detach(), 1.0) + _bce(fake.detach(), 0.0)
        assert torch.isfinite(got), f"on {name} the loss is {got.item()}: compute it from logits stably (softplus or BCE with logits)"
        assert_close(got.item(), want.item(), tol=1e-4, name=f"discriminator loss on {name}")
        got.backward()
        assert real.grad is not None and fake.grad is not None, "the loss does not depend on both batches of logits"
        assert_close(real.grad.numpy(), -torch.sigmoid(-real.detach()).numpy() / len(real), tol=1e-4,
                     name=f"gradient w.r.t. the real logits ({name})")
        assert_close(fake.grad.numpy(), torch.sigmoid(fake.detach()).numpy() / len(fake), tol=1e-4,
                     name=f"gradient w.r.t. the fake logits ({name})")


def check_generator_loss(generator_loss: Callable, seed: int = 0) -> None:
    """Fail unless generator_loss(fake_logits) is the non-saturating loss BCE(fake, 1) = mean softplus(-x)
    (not the saturating -mean softplus(x) = mean log(1 - D(G(z)))), on unseen and confident logits, with the
    right gradient (which is largest where the discriminator rejects the fakes)."""
    __tracebackhide__ = True
    for name, _, fake in _logit_batches(seed):
        fake = fake.clone().requires_grad_()
        got = _scalar(generator_loss, fake)
        assert torch.isfinite(got), f"on {name} the loss is {got.item()}: compute it from logits stably"
        want = _bce(fake.detach(), 1.0)
        saturating = -_bce(fake.detach(), 0.0)
        if abs(got.item() - saturating.item()) < 1e-4 * max(1.0, abs(saturating.item())):
            raise AssertionError(f"on {name} the generator loss equals mean log(1 - D(G(z))) = {saturating.item():.4f}: "
                                 "the saturating loss, whose gradient vanishes when D rejects the fakes; "
                                 "use the non-saturating -mean log D(G(z))")
        assert_close(got.item(), want.item(), tol=1e-4, name=f"generator loss on {name}")
        got.backward()
        assert fake.grad is not None, "the loss does not depend on the fake logits"
        assert_close(fake.grad.numpy(), -torch.sigmoid(-fake.detach()).numpy() / len(fake), tol=1e-4,
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
    out = call_student(fn.__name__, fn, *args)
    assert isinstance(out, float), f"{fn.__name__} must return the loss as a Python float, got {type(out).__name__}"
    return out


def _sgd_step(model: nn.Module, loss: torch.Tensor, lr: float) -> None:
    """The oracle's step: plain SGD on ``model`` with the gradient of ``loss`` (nothing accumulated)."""
    grads = torch.autograd.grad(loss, list(model.parameters()))
    with torch.no_grad():
        for p, grad in zip(model.parameters(), grads):
            p -= lr * grad


def _assert_step(module: nn.Module, before: list[torch.Tensor], oracle: nn.Module, what: str, tol: float = 1e-3):
    """Fail unless the update module received (its parameters now minus ``before``) is the oracle's update:
    relative error ||update - oracle's|| / ||oracle's|| at most ``tol``."""
    __tracebackhide__ = True
    for (name, p), b, q in zip(module.named_parameters(), before, oracle.parameters()):
        got, want = (p.detach() - b), (q.detach() - b)
        error = float((got - want).norm() / want.norm().clamp_min(1e-12))
        assert error <= tol, (f"{what}: the update of {name} differs from the oracle's by {error:.2e} of its size "
                              f"(band <= {tol:g}); stale gradients not cleared, or the wrong loss?")


def check_d_step(d_step: Callable, discriminator_loss: Callable, seed: int = 0, steps: int = 2) -> None:
    """Fail unless ``steps`` calls of d_step(G, D, opt_D, real, z) on a small (G, D) pair with plain SGD each
    take the step the oracle takes: gradient of discriminator_loss(D(real), D(G(z))) w.r.t. D only, fresh each
    step (gradients cleared), G unchanged; and return the loss before the step.

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
        D_oracle, d_before = copy.deepcopy(D), _params(D)
        loss = _call_step(d_step, G, D, opt, real, z)
        for p, before in zip(G.parameters(), g_before):
            assert torch.equal(p.detach(), before), "d_step changed the generator; it must update the discriminator only"
        want = _scalar(discriminator_loss, D_oracle(real), D_oracle(G(z).detach()))
        _sgd_step(D_oracle, want, lr=0.5)
        assert_close(loss, want.item(), tol=1e-4, name=f"d_step's returned loss (step {step + 1})")
        _assert_step(D, d_before, D_oracle, f"d_step, step {step + 1}")


def check_g_step(g_step: Callable, generator_loss: Callable, seed: int = 0, steps: int = 2) -> None:
    """Fail unless ``steps`` calls of g_step(G, D, opt_G, z) with plain SGD on G each take the oracle's step:
    gradient of generator_loss(D(G(z))) (the student's own, as in check_d_step) w.r.t. G, fresh each step;
    D unchanged; loss returned."""
    __tracebackhide__ = True
    G, D = _pair(seed + 1)
    opt = torch.optim.SGD(G.parameters(), lr=0.5)
    d_before = _params(D)
    g = _unseen(20 + seed)
    for step in range(steps):
        z = torch.randn(5, 3, generator=g)
        G_oracle, g_before = copy.deepcopy(G), _params(G)
        loss = _call_step(g_step, G, D, opt, z)
        for p, before in zip(D.parameters(), d_before):
            assert torch.equal(p.detach(), before), "g_step changed the discriminator; it must update the generator only"
        want = _scalar(generator_loss, D(G_oracle(z)))
        _sgd_step(G_oracle, want, lr=0.5)
        assert_close(loss, want.item(), tol=1e-4, name=f"g_step's returned loss (step {step + 1})")
        _assert_step(G, g_before, G_oracle, f"g_step, step {step + 1}")


@torch.no_grad()
def generate(G: nn.Module, n: int = 5000, seed: int = 0, batch_size: int = 1000) -> torch.Tensor:
    """n images (n, 1, 28, 28) from G in eval mode, for latent codes drawn with the grader's seed."""
    __tracebackhide__ = True
    G = G.float().cpu().eval()
    g = _unseen(100 + seed)
    z = torch.randn(n, G.latent_dim, generator=g)
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
        The :class:`~da6401.grading.judge.SampleStats`.
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


def load_generator(make_generator: Callable[[], nn.Module], path) -> nn.Module:
    """The student's generator class with the submitted weights (a CheckpointError says what is wrong)."""
    __tracebackhide__ = True
    return load_into(make_generator(), path)
