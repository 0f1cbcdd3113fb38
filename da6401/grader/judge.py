"""The MNIST judge: the course's own digit classifier, with which A4's hidden tests measure generated digits.

Inception weights, the usual yardstick of generated images (FID, Inception score), cannot be downloaded
here or on many grading servers; and they are ImageNet features, not digit features. The course trains its
own small MNIST CNN instead, an instructor-only asset (``source/a4_generative/instructor/mnist_judge.pt``,
ignored by nbgrader, never released). One command reproduces it:

    python -m da6401.grader.judge            # trains for about a minute, writes the file, prints its accuracy

Measures (both on generated images against the MNIST test set):

- Fréchet distance between Gaussians fitted to the judge's penultimate-layer features (FID's recipe, in a
  feature space that knows digits);
- class coverage and confidence: the judge's predicted-class histogram over the samples, the mean top
  probability, and the Inception-score style exp(E_x KL(p(y|x) || p(y))), at most 10.

Contract: images are float tensors (N, 1, 28, 28) with pixels in [-1, 1] (0 black, as a tanh generator gives).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
JUDGE_PATH = REPO / "source" / "a4_generative" / "instructor" / "mnist_judge.pt"
FEATURES = 128


class MnistJudge(nn.Module):
    """(N, 1, 28, 28) images in [-1, 1] -> (N, 10) logits; ``features`` gives the (N, 128) penultimate layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 14x14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 7x7
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def mnist_as_gan_images(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """An MNIST split as (N, 1, 28, 28) float32 images in [-1, 1] and (N,) int64 labels."""
    from da6401.data import load_mnist

    images, labels = load_mnist(split)
    return torch.from_numpy(images).float().div(127.5).sub(1.0).unsqueeze(1), torch.from_numpy(labels)


def train_judge(epochs: int = 2, seed: int = 0) -> tuple[MnistJudge, float]:
    """Train the judge on the MNIST training split (Adam, batch 128, small random shifts).

    Returns:
        (judge in eval mode, its MNIST test accuracy).
    """
    torch.manual_seed(seed)
    x, y = mnist_as_gan_images("train")
    judge = MnistJudge()
    optimizer = torch.optim.Adam(judge.parameters(), lr=1e-3)
    for _ in range(epochs):
        judge.train()
        for idx in torch.randperm(len(x)).split(128):
            batch = x[idx]
            shift = torch.randint(-2, 3, (2,)).tolist()  # one shift per batch: robust to slightly off-centre digits
            batch = torch.roll(batch, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(judge(batch), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    test_x, test_y = mnist_as_gan_images("test")
    judge.eval()
    with torch.no_grad():
        accuracy = float((_batched(judge, test_x).argmax(1) == test_y).float().mean())
    return judge, accuracy


def _batched(fn, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def load_judge(path: str | os.PathLike | None = None) -> MnistJudge:
    """The judge from ``path`` (default: $DA6401_MNIST_JUDGE, else the instructor asset), in eval mode.

    Raises:
        FileNotFoundError: the asset is missing, with the command that rebuilds it.
    """
    path = Path(path or os.environ.get("DA6401_MNIST_JUDGE") or JUDGE_PATH)
    if not path.is_file():
        raise FileNotFoundError(f"the grader's MNIST judge is missing ({path}); an instructor rebuilds it with "
                                "`python -m da6401.grader.judge` (this is the grader's fault, not the student's)")
    judge = MnistJudge()
    judge.load_state_dict({k: v.float() for k, v in torch.load(path, map_location="cpu", weights_only=True).items()})
    return judge.eval()


@dataclass(frozen=True)
class SampleStats:
    """What the judge sees in a set of images."""
    fid: float               # Fréchet distance to the MNIST test set in the judge's feature space
    class_fractions: tuple   # fraction of the images the judge puts in each class 0..9
    confidence: float        # mean top-class probability
    inception_score: float   # exp(E KL(p(y|x) || p(y))), between 1 and 10

    def covered(self, at_least: float) -> int:
        """Number of classes holding at least the fraction ``at_least`` of the images."""
        return sum(f >= at_least for f in self.class_fractions)


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of features (N, D), in float64."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, cov1) and N(mu2, cov2):
    |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2)).

    The trace of the matrix square root is computed as the sum of the square roots of the eigenvalues of
    the symmetric matrix cov1^(1/2) cov2 cov1^(1/2) (which has the eigenvalues of cov1 cov2), so no SciPy.
    """
    values, vectors = np.linalg.eigh(cov1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * trace_root)


_TEST_GAUSSIAN: dict = {}


@lru_cache(maxsize=1)
def _default_judge() -> MnistJudge:
    """The judge :func:`load_judge` finds, loaded once per process (the grader measures every DCGAN with it)."""
    return load_judge()


def preload() -> None:
    """Load the judge and its statistics of the MNIST test set (the mutant runner's forks then share them)."""
    judge_samples(torch.zeros(2, 1, 28, 28))


@torch.no_grad()
def judge_samples(images: torch.Tensor, judge: MnistJudge | None = None) -> SampleStats:
    """Measure images (N, 1, 28, 28) in [-1, 1] against the MNIST test set with the judge.

    Pixels outside [-1, 1] are clipped first: the judge is not asked about images no MNIST digit resembles.
    """
    judge = judge or _default_judge()
    images = images.detach().float().cpu().clamp(-1, 1)
    if id(judge) not in _TEST_GAUSSIAN:
        _TEST_GAUSSIAN.clear()
        _TEST_GAUSSIAN[id(judge)] = gaussian(_batched(judge.features, mnist_as_gan_images("test")[0]).numpy())
    features = _batched(judge.features, images)
    probs = F.softmax(judge.head(features), dim=1).double()
    marginal = probs.mean(0, keepdim=True)
    kl = (probs * (probs.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(1).mean()
    fractions = torch.bincount(probs.argmax(1), minlength=10).double() / len(images)
    return SampleStats(fid=frechet_distance(*gaussian(features.numpy()), *_TEST_GAUSSIAN[id(judge)]),
                       class_fractions=tuple(round(float(f), 4) for f in fractions),
                       confidence=float(probs.max(1).values.mean()), inception_score=float(kl.exp()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m da6401.grader.judge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=JUDGE_PATH)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    judge, accuracy = train_judge(args.epochs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() for k, v in judge.state_dict().items()}, args.out)
    print(f"MNIST judge: test accuracy {accuracy:.4f}, trained in {time.perf_counter() - start:.0f} s, "
          f"{args.out.stat().st_size / 1e6:.2f} MB -> {args.out}")
    train_x = mnist_as_gan_images("train")[0][:10_000]
    stats = judge_samples(train_x, load_judge(args.out))
    print(f"10,000 training digits against the test set: FD {stats.fid:.2f}, IS {stats.inception_score:.2f}, "
          f"confidence {stats.confidence:.3f}, class fractions {stats.class_fractions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
