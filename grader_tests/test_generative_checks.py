"""Do the DCGAN checks (A4) pass correct implementations and catch the usual bugs, and is the judge's quality bar
calibrated: real digits clear it, noise, a generator collapsed onto one digit and an untrained generator fail it?"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from da6401.student.checkpoints import save_weights
from da6401.grader.generative import (FID_BAR, assert_sample_quality, check_d_step,
                                       check_discriminator, check_discriminator_loss, check_generator,
                                       check_generator_loss, check_g_step, load_generator)


# --- generators and discriminators --------------------------------------------------------------------
class Generator(nn.Module):
    """The reference design: project, then two transposed convolutions, tanh."""

    def __init__(self, latent_dim=64, width=32, out=nn.Tanh):
        super().__init__()
        self.latent_dim, self.width = latent_dim, width
        self.project = nn.Sequential(nn.Linear(latent_dim, 2 * width * 49, bias=False), nn.BatchNorm1d(2 * width * 49),
                                     nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width),
                                nn.ReLU(), nn.ConvTranspose2d(width, 1, 4, 2, 1), out())

    def forward(self, z):
        return self.up(self.project(z).view(-1, 2 * self.width, 7, 7))


class UpsampleGenerator(nn.Module):
    """A correct alternative: latent size 100, nearest upsampling between stride-1 transposed convolutions."""

    def __init__(self):
        super().__init__()
        self.latent_dim = 100
        self.net = nn.Sequential(nn.Unflatten(1, (100, 1, 1)), nn.ConvTranspose2d(100, 64, 7), nn.BatchNorm2d(64),
                                 nn.ReLU(), nn.Upsample(scale_factor=2), nn.ConvTranspose2d(64, 32, 3, padding=1),
                                 nn.BatchNorm2d(32), nn.ReLU(), nn.Upsample(scale_factor=2),
                                 nn.ConvTranspose2d(32, 1, 3, padding=1), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self, pool=False, sigmoid=False, keepdim=False):
        super().__init__()
        stride = 1 if pool else 2
        layers = [nn.Conv2d(1, 16, 4, stride, 1 if stride == 2 else "same"), nn.LeakyReLU(0.2)]
        layers += [nn.MaxPool2d(2)] if pool else []
        layers += [nn.Conv2d(16, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.LeakyReLU(0.2), nn.Flatten(),
                   nn.Linear(32 * 49, 1)]
        layers += [nn.Sigmoid()] if sigmoid else []
        self.net, self.keepdim = nn.Sequential(*layers), keepdim

    def forward(self, x):
        out = self.net(x)
        return out if self.keepdim else out.squeeze(1)


def test_generator_check_passes_the_reference_design_and_an_alternative():
    """Do a projection + transposed-convolution generator and an upsampling one with latent size 100 pass?"""
    check_generator(Generator, budget=1_000_000)
    check_generator(UpsampleGenerator, budget=1_000_000)


@pytest.mark.parametrize("make,message", [
    (lambda: Generator(out=nn.Identity), r"\[-1, 1\]"),
    (lambda: Generator(width=256), "budget"),
], ids=["no_tanh", "over_budget"])
def test_generator_check_catches_an_unbounded_output_and_the_budget(make, message):
    """Is a generator without tanh caught (its weights scaled up push pixels past 1), and one over the budget?"""
    with pytest.raises(AssertionError, match=message):
        check_generator(make, budget=1_000_000)


class ClampedGenerator(Generator):
    """Bounded by a clamp instead of tanh: in [-1, 1], but flat (zero gradient) wherever the clamp bites."""

    def __init__(self):
        super().__init__(out=nn.Identity)

    def forward(self, z):
        return F.hardtanh(super().forward(z))


class FixedLatentGenerator(Generator):
    """Takes latent_dim but builds its layers for 64 whatever it is asked for."""

    def __init__(self, latent_dim=64):
        super().__init__()
        self.latent_dim = latent_dim


class BatchStatsGenerator(Generator):
    """Normalises with the batch's statistics even in eval mode (F.batch_norm with training=True)."""

    def forward(self, z):
        h = self.up[0](self.project(z).view(-1, 2 * self.width, 7, 7))
        return self.up[3:](F.relu(F.batch_norm(h, None, None, training=True)))


@pytest.mark.parametrize("make,message", [
    (ClampedGenerator, "clamped"),
    (lambda: Generator(out=nn.Sigmoid), "reaches both -1"),
    (FixedLatentGenerator, r"latent_dim=35\) cannot take"),
    (BatchStatsGenerator, "rest of its batch"),
], ids=["hardtanh_output", "sigmoid_output", "ignores_latent_dim", "batch_statistics_in_eval"])
def test_generator_check_catches_a_clamp_a_sigmoid_a_fixed_latent_size_and_batch_statistics(make, message):
    """Are outputs bounded the wrong way, a latent_dim argument that is not honoured, and an eval-mode image that
    depends on the other codes of the batch caught (each passes the range and shape checks)?"""
    with pytest.raises(AssertionError, match=message):
        check_generator(make, budget=1_000_000)


def test_generator_check_needs_the_latent_size():
    """Is a generator that does not say its latent size refused with a message naming latent_dim?"""
    class NoLatent(Generator):
        def __init__(self):
            super().__init__()
            del self.latent_dim

    with pytest.raises(AssertionError, match="latent_dim"):
        check_generator(NoLatent, budget=1_000_000)


def test_discriminator_check_passes_logits_and_catches_pooling_sigmoid_and_shape():
    """Does a strided-convolution discriminator of logits pass, and are pooling, a sigmoid and (N, 1) outputs caught?"""
    check_discriminator(Discriminator, budget=1_000_000)
    for make, message in ((lambda: Discriminator(pool=True), "pooling"),
                          (lambda: Discriminator(sigmoid=True), "sigmoid"),
                          (lambda: Discriminator(keepdim=True), r"expected \(6,\)")):
        with pytest.raises(AssertionError, match=message):
            check_discriminator(make, budget=1_000_000)


class DefaultSlopeDiscriminator(Discriminator):
    def __init__(self):
        super().__init__()
        for i, m in enumerate(self.net):
            if isinstance(m, nn.LeakyReLU):
                self.net[i] = nn.LeakyReLU()


class DropoutDiscriminator(Discriminator):
    def forward(self, x):   # F.dropout without training=self.training: on in eval mode too
        return self.net[-1](F.dropout(self.net[:-1](x), 0.3)).squeeze(1)


class StandardisingDiscriminator(Discriminator):
    def forward(self, x):
        return super().forward((x - x.mean()) / x.std())


class SqueezeAllDiscriminator(Discriminator):
    def forward(self, x):
        return self.net(x).squeeze()


@pytest.mark.parametrize("make,message", [
    (DefaultSlopeDiscriminator, "slopes"), (DropoutDiscriminator, "random is still on"),
    (StandardisingDiscriminator, "rest of its batch"), (SqueezeAllDiscriminator, "batch of one"),
], ids=["leaky_slope_0.01", "dropout_in_eval", "standardises_the_batch", "squeezes_every_axis"])
def test_discriminator_check_catches_the_slope_eval_randomness_batch_coupling_and_a_batch_of_one(make, message):
    """Are PyTorch's default LeakyReLU slope, dropout left on in eval mode, logits that depend on the other images
    of the batch, and a batch of one squeezed to a 0-d tensor caught?"""
    with pytest.raises(AssertionError, match=message):
        check_discriminator(make, budget=1_000_000)


# --- losses --------------------------------------------------------------------------------------------
def d_loss(real, fake):
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def d_loss_unstable(real, fake):
    return -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()


def d_loss_pooled(real, fake):  # one mean over both batches: wrong when their sizes differ
    logits = torch.cat([real, fake])
    return 2 * F.binary_cross_entropy_with_logits(logits, torch.cat([torch.ones_like(real), torch.zeros_like(fake)]))


def d_loss_swapped(real, fake):
    return d_loss(fake, real)


def g_loss(fake):
    return F.softplus(-fake).mean()


def g_loss_saturating(fake):
    return -F.softplus(fake).mean()  # mean log(1 - sigmoid(fake)), minimised


def g_loss_unstable(fake):
    return -torch.log(torch.sigmoid(fake)).mean()


def test_loss_checks_pass_correct_losses():
    """Do BCE-with-logits and softplus forms of both losses pass?"""
    check_discriminator_loss(d_loss, seed=1)
    check_generator_loss(g_loss, seed=2)


@pytest.mark.parametrize("bad,message", [(d_loss_unstable, "stably"), (d_loss_pooled, "discriminator loss on ordinary"),
                                         (d_loss_swapped, "discriminator loss on ordinary")])
def test_discriminator_loss_check_catches_underflow_pooling_and_swapped_labels(bad, message):
    """Are log(sigmoid) underflow, one mean over both batches and swapped targets caught?"""
    with pytest.raises(AssertionError, match=message):
        check_discriminator_loss(bad, seed=1)


@pytest.mark.parametrize("bad,message", [(g_loss_saturating, "saturating loss"), (g_loss_unstable, "stably")])
def test_generator_loss_check_catches_the_saturating_loss_and_underflow(bad, message):
    """Is the minimax (saturating) generator loss named as such, and log(sigmoid) underflow caught?"""
    with pytest.raises(AssertionError, match=message):
        check_generator_loss(bad, seed=2)


# --- update steps --------------------------------------------------------------------------------------
def d_step(G, D, opt_D, real, z):
    loss = d_loss(D(real), D(G(z).detach()))
    opt_D.zero_grad()
    loss.backward()
    opt_D.step()
    return loss.item()


def d_step_no_zero_grad(G, D, opt_D, real, z):
    loss = d_loss(D(real), D(G(z).detach()))
    loss.backward()
    opt_D.step()
    return loss.item()


def d_step_trains_generator_too(G, D, opt_D, real, z):
    loss = d_loss(D(real), D(G(z)))
    opt_D.zero_grad()
    loss.backward()
    opt_D.step()
    with torch.no_grad():
        for p in G.parameters():
            p -= 0.1 * p.grad
    return loss.item()


def d_step_no_detach(G, D, opt_D, real, z):
    loss = d_loss(D(real), D(G(z)))
    opt_D.zero_grad()
    loss.backward()
    opt_D.step()
    return loss.item()


def d_step_sets_generator_eval(G, D, opt_D, real, z):
    G.eval()
    return d_step(G, D, opt_D, real, z)


def g_step_sets_discriminator_eval(G, D, opt_G, z):
    D.eval()
    return g_step(G, D, opt_G, z)


def g_step_on(loss_fn):
    """The textbook g_step, on the given generator loss."""
    def g_step(G, D, opt_G, z):
        loss = loss_fn(D(G(z)))
        opt_G.zero_grad()
        loss.backward()
        opt_G.step()
        return loss.item()
    return g_step


g_step, g_step_saturating = g_step_on(g_loss), g_step_on(g_loss_saturating)


def g_step_returns_tensor(G, D, opt_G, z):
    g_step(G, D, opt_G, z)
    return torch.tensor(0.0)


def test_step_checks_pass_correct_steps():
    """Do the textbook d_step and g_step pass two oracle steps each?"""
    check_d_step(d_step, d_loss, seed=3)
    check_g_step(g_step, g_loss, seed=4)


@pytest.mark.parametrize("bad,message", [(d_step_no_zero_grad, "stale gradients"),
                                         (d_step_trains_generator_too, "changed the generator"),
                                         (d_step_no_detach, "detach the fakes"),
                                         (d_step_sets_generator_eval, "left it in eval mode")])
def test_d_step_check_catches_stale_gradients_generator_updates_and_gradients_and_modes(bad, message):
    """Are a d_step that never clears gradients (right on step 1, wrong on step 2), one that moves G, one that
    backpropagates into G (G unchanged, its .grad filled) and one that leaves G in eval mode caught?"""
    with pytest.raises(AssertionError, match=message):
        check_d_step(bad, d_loss, seed=3)


@pytest.mark.parametrize("bad,message", [(g_step_saturating, "returned loss"), (g_step_returns_tensor, "Python float"),
                                         (g_step_sets_discriminator_eval, "left it in eval mode")])
def test_g_step_check_catches_another_loss_a_tensor_result_and_a_mode_change(bad, message):
    """Are a g_step that does not use the given generator loss, one returning a tensor, and one that leaves D in
    eval mode caught?"""
    with pytest.raises(AssertionError, match=message):
        check_g_step(bad, g_loss, seed=4)


def test_step_checks_use_the_students_own_loss():
    """Does a correct step built on a wrong loss pass the step check (the loss check alone costs those points)?"""
    check_g_step(g_step_saturating, g_loss_saturating, seed=4)


# --- the judge's quality bar ---------------------------------------------------------------------------
class Replay(nn.Module):
    """A 'generator' that returns given images in turn, for measuring fixed image sets through the grading path."""

    def __init__(self, images):
        super().__init__()
        self.latent_dim = 1
        self.register_buffer("images", images)
        self.next = 0

    def forward(self, z):
        out = self.images[self.next:self.next + len(z)]
        self.next += len(z)
        return out


@pytest.fixture(scope="module")
def mnist_train(needs_data):
    from da6401.grader.judge import mnist_as_gan_images

    return mnist_as_gan_images("train")


def test_real_training_digits_clear_the_quality_bar_with_margin(mnist_train):
    """Do 5,000 real training digits (not the test digits the judge compares with) pass, far under the bar?"""
    images, _ = mnist_train
    stats = assert_sample_quality(Replay(images[:5000]))
    assert stats.fid < FID_BAR / 3, f"real digits are at {stats.fid:.2f}: the bar {FID_BAR} leaves no room"


@pytest.mark.parametrize("weak", ["uniform_noise", "one_digit", "untrained_generator", "blurred_digits"])
def test_weak_image_sets_fail_the_quality_bar(mnist_train, weak):
    """Do uniform noise, 5,000 real images of one digit (perfect mode collapse), an untrained DCGAN generator
    and heavily blurred real digits all fail?"""
    images, labels = mnist_train
    g = torch.Generator().manual_seed(0)
    if weak == "uniform_noise":
        fake = Replay(torch.rand(5000, 1, 28, 28, generator=g) * 2 - 1)
    elif weak == "one_digit":
        fake = Replay(images[labels == 3][:5000])
    elif weak == "untrained_generator":
        torch.manual_seed(0)
        fake = Generator(width=64)
    else:
        blurred = F.avg_pool2d(images[:5000], 5, stride=1, padding=2, count_include_pad=False)
        fake = Replay(blurred)
    with pytest.raises(AssertionError, match="Frechet distance|mode collapse"):
        assert_sample_quality(fake)


def test_a_generator_checkpoint_loads_into_its_class(tmp_path):
    """Does load_generator restore a saved generator (fp16 on disk) and refuse one saved from another design?"""
    from da6401.student.checkpoints import CheckpointError

    torch.manual_seed(0)
    G = Generator()
    save_weights(G, tmp_path / "g.pt")
    loaded = load_generator(Generator, tmp_path / "g.pt")
    assert torch.allclose(loaded.project[0].weight, G.project[0].weight.half().float())
    with pytest.raises(CheckpointError, match="different architecture"):
        load_generator(UpsampleGenerator, tmp_path / "g.pt")


# --- generated, not retrieved ----------------------------------------------------------------------------
class HashLookup(nn.Module):
    """A cheat: returns the real image its code's hash picks (optionally with noise), ignoring every weight."""

    def __init__(self, images, noise: float = 0.0, quantum: float | None = None):
        super().__init__()
        self.latent_dim, self.images, self.noise, self.quantum = 100, images, noise, quantum

    def forward(self, z):
        import hashlib

        keys = z if self.quantum is None else torch.round(z / self.quantum)
        picks = [int(hashlib.sha256(k.numpy().tobytes()).hexdigest()[:8], 16) % len(self.images) for k in keys]
        g = torch.Generator().manual_seed(len(z))
        return (self.images[picks] + self.noise * torch.randn(len(picks), 1, 28, 28, generator=g)).clamp(-1, 1)


@pytest.fixture(scope="module")
def mnist_test(needs_data):
    from da6401.grader.judge import mnist_as_gan_images

    return mnist_as_gan_images("test")


@pytest.mark.parametrize("cheat", ["test_digits", "noisy_training_digits", "shifted_training_digits",
                                   "mirrored_training_digits"])
def test_real_digits_handed_back_pass_the_judge_but_fail_as_near_copies(mnist_train, mnist_test, cheat):
    """Do real digits picked by a hash of z (test or training digits, with noise of sigma 0.3, shifted by two
    pixels, or mirrored) pass the judge's distance, and fail the near-copy check with the count of near-copies?"""
    from da6401.grader.generative import assert_new_digits

    train, test = mnist_train[0], mnist_test[0]
    images = {"test_digits": test, "training_digits": train, "noisy_training_digits": train,
              "shifted_training_digits": torch.roll(train, (2, -1), (2, 3)),
              "mirrored_training_digits": train.flip(-1)}[cheat]
    G = HashLookup(images, noise=0.3 if cheat.startswith("noisy") else 0.0)
    if cheat in ("test_digits", "noisy_training_digits"):
        assert_sample_quality(G)  # the judge alone would pass them (a trained generator passes both checks:
        # test_thresholds.py measures the reference's samples)
    with pytest.raises(AssertionError, match=r"near-copies of real MNIST digits \(\d+ of 1000"):
        assert_new_digits(G)


@pytest.mark.parametrize("quantum", [None, 0.5, 2.0])
def test_a_lookup_by_z_jumps_along_straight_lines(mnist_train, quantum):
    """Does a generator that looks its image up by z (exactly, or by z rounded to a grid) fail the smoothness
    check, whose bar a network passes (an untrained one too: the check is about z, not quality)?"""
    from da6401.grader.generative import assert_smooth_in_z

    with pytest.raises(AssertionError, match="jump"):
        assert_smooth_in_z(HashLookup(mnist_train[0], quantum=quantum))
    torch.manual_seed(0)
    tortuosity, share = assert_smooth_in_z(UpsampleGenerator().eval())
    assert tortuosity < 6 and share < 0.35
