"""A1's trained network, graded from its submitted weights by the grader's own forward pass; and ``fit``.

The notebook saves the trained MLP with ``save_mlp(model, "mlp_mnist.npz")`` (NumPy's ``.npz``):

    activation   0-d unicode array: "relu", "tanh" or "sigmoid" (the hidden layers' nonlinearity)
    W0, b0, ...  float arrays, W_i (D_i, D_{i+1}) and b_i (D_{i+1},); D_0 = 784, the last D = 10
    train_loss, val_acc   optional: the training history, for the notebook's plot

The grader reads that file with ``allow_pickle=False`` and computes the logits itself (Linear, activation, ...,
Linear; dropout off, as at evaluation time): the student's ``forward`` plays no part in the accuracy, so no code
in the notebook (a lookup of the public test labels, say) can change it; the backward pass and every layer were
graded in their own cells.

``fit`` is checked separately, with exact layers, optimiser and loss in place of the student's, so that a bug
elsewhere is charged to its own cell.
"""
from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from da6401.grader.context import submitted_file

ACTIVATIONS = {"relu": lambda h: np.maximum(h, 0.0), "tanh": np.tanh,
               "sigmoid": lambda h: np.exp(-np.logaddexp(0.0, -h))}

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MAX_PARAMETERS = 2_000_000   # the notebook's advice is a network that trains in about a minute; the reference: 535,818


class WeightsError(AssertionError):
    """The weights file is missing, unreadable or not an MLP of the contract."""


def read_mlp(path, max_parameters: int = MAX_PARAMETERS) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """The submission's weights file: (weights, biases, activation), validated.

    Raises:
        WeightsError: missing, not an .npz of arrays (pickles are refused), or not the contract's MLP.
    """
    __tracebackhide__ = True
    path = submitted_file(path)
    if not path.is_file():
        raise WeightsError(f"no weights at {path.name}: run the training cell, which saves them with save_mlp, and "
                           f"submit {path.name} with the notebook")
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise WeightsError(f"{path.name} is not a readable .npz of arrays ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}); save it with save_mlp") from None
    activation = arrays.get("activation")
    if activation is None or activation.shape != () or str(activation) not in ACTIVATIONS:
        raise WeightsError(f"{path.name} must name its activation ({', '.join(ACTIVATIONS)}); save it with save_mlp")
    layers = sum(1 for name in arrays if name.startswith("W"))
    weights = [arrays.get(f"W{i}") for i in range(layers)]
    biases = [arrays.get(f"b{i}") for i in range(layers)]
    if layers == 0 or any(w is None for w in weights) or any(b is None for b in biases):
        raise WeightsError(f"{path.name} must hold W0, b0, W1, b1, ... for every Linear layer")
    fan_in = 784
    for i, (w, b) in enumerate(zip(weights, biases)):
        if w.ndim != 2 or b.ndim != 1 or w.dtype.kind != "f" or b.dtype.kind != "f":
            raise WeightsError(f"W{i} and b{i} must be float arrays of 2 and 1 dimensions")
        if w.shape[0] != fan_in or b.shape != (w.shape[1],):
            raise WeightsError(f"W{i} has shape {w.shape} and b{i} {b.shape}; layer {i} takes {fan_in} inputs")
        fan_in = w.shape[1]
    if fan_in != 10:
        raise WeightsError(f"the last layer gives {fan_in} outputs; MNIST has 10 classes")
    n = sum(w.size + b.size for w, b in zip(weights, biases))
    if n > max_parameters:
        raise WeightsError(f"the network has {n:,} parameters; the limit is {max_parameters:,}")
    if not all(np.isfinite(a).all() for a in weights + biases):
        raise WeightsError(f"{path.name} holds values that are not finite (training diverged?)")
    return [w.astype(np.float32) for w in weights], [b.astype(np.float32) for b in biases], str(activation)


def logits(weights, biases, activation: str, x: np.ndarray) -> np.ndarray:
    """The grader's forward pass: (N, 784) -> (N, 10) logits, in float32, dropout off."""
    h = np.asarray(x, dtype=np.float32)
    f = ACTIVATIONS[activation]
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = h @ w + b
        if i < len(weights) - 1:
            h = f(h)
    return h


@lru_cache(maxsize=2)
def mnist_inputs(split: str) -> tuple[np.ndarray, np.ndarray]:
    """An MNIST split as the notebook's ``preprocess`` gives it: float32 (N, 784), standardised; labels (N,).
    Loaded once per process; read-only."""
    from da6401.data import load_mnist

    images, labels = load_mnist(split)
    x = ((images.reshape(-1, 28 * 28) / 255.0 - MNIST_MEAN) / MNIST_STD).astype(np.float32)
    x.flags.writeable = labels.flags.writeable = False
    return x, labels


def preload() -> None:
    """Load the MNIST splits the checks measure on (the mutant runner's forks then share them)."""
    mnist_inputs("train"), mnist_inputs("test")


def assert_mnist_accuracy(path, bar: float) -> float:
    """Print the MNIST test accuracy of the submitted weights (the grader's forward pass) and fail below ``bar``."""
    __tracebackhide__ = True
    weights, biases, activation = read_mlp(path)
    x, y = mnist_inputs("test")
    predictions = np.concatenate([logits(weights, biases, activation, x[i:i + 2000]).argmax(1)
                                  for i in range(0, len(x), 2000)])
    acc = float(np.mean(predictions == y))
    sizes = [weights[0].shape[0]] + [w.shape[1] for w in weights]
    print(f"MNIST test accuracy of the submitted weights ({'-'.join(map(str, sizes))}, {activation}): "
          f"{acc:.4f} (bar: {bar:.2f})")
    assert acc >= bar, f"the submitted network's MNIST test accuracy is {acc:.4f}; it must be at least {bar:.2f}"
    return acc


# --- fit, with exact parts ----------------------------------------------------------------------------------
class _ExactLinear:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW, self.db = self.x.T @ dout, dout.sum(axis=0)
        return dout @ self.W.T


class _ExactMLP:
    """784-H-10 with ReLU: the contract's forward(X, train), backward(dlogits), params(), grads(). It notes, for
    each forward pass, the ``train`` flag and whether the batch came from the training or the validation set."""

    def __init__(self, sizes, seed, tags=None):
        rng = np.random.default_rng(seed)
        self.layers = [_ExactLinear(rng.normal(0, np.sqrt(2 / a), (a, b)), np.zeros(b))
                       for a, b in zip(sizes[:-1], sizes[1:])]
        self.tags, self.calls = tags or {}, []

    def forward(self, X, train=False):
        first = np.asarray(X[0], dtype=np.float32).tobytes() if len(X) else b""
        self.calls.append((bool(train), self.tags.get(first, "other"), len(X)))
        h = X
        for i, layer in enumerate(self.layers):
            h = layer.forward(h)
            if i < len(self.layers) - 1:
                self.__dict__.setdefault("masks", {})[i] = h > 0
                h = np.maximum(h, 0)
        return h

    def backward(self, dlogits):
        d = dlogits
        for i in reversed(range(len(self.layers))):
            if i < len(self.layers) - 1:
                d = d * self.masks[i]
            d = self.layers[i].backward(d)

    def params(self):
        return [p for layer in self.layers for p in (layer.W, layer.b)]

    def grads(self):
        return [g for layer in self.layers for g in (layer.dW, layer.db)]


class _ExactSGD:
    def __init__(self, lr):
        self.lr = lr

    def step(self, params, grads):
        for p, g in zip(params, grads):
            p -= self.lr * g


def _exact_cross_entropy(z, y):
    shifted = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    n = len(y)
    dz = np.exp(shifted - log_norm[:, None])
    dz[np.arange(n), y] -= 1.0
    return float(np.mean(log_norm - shifted[np.arange(n), y])), dz / n


def _exact_l2_penalty(weights, lam):
    return 0.5 * lam * sum(float(np.sum(w * w)) for w in weights), [lam * w for w in weights]


def _fit_with_exact_parts(fit, X, y, X_val, y_val, epochs: int, lr: float, runs: list[tuple[int, float]]):
    """Beside the student's ``fit`` (in its kernel): for each (seed, lam) of ``runs``, ``fit`` trains an exact
    network (initialised alike every time) with exact SGD, the notebook's ``cross_entropy`` and ``l2_penalty``
    replaced by exact ones that note what they return. Returns, per run, (history, trained parameters, notes):
    notes = {"forward": [(train, "train" | "val" | "other", batch size)], "loss": [(loss, batch size)],
    "reg": [penalty]}, in call order."""
    namespace = fit.__globals__
    saved = {name: namespace.get(name) for name in ("cross_entropy", "l2_penalty")}
    tags = {np.asarray(row, dtype=np.float32).tobytes(): "val" for row in X_val}
    tags.update({np.asarray(row, dtype=np.float32).tobytes(): "train" for row in X})
    results = []
    try:
        for seed, lam in runs:
            notes = {"loss": [], "reg": []}

            def cross_entropy(z, labels, _notes=notes):
                loss, dz = _exact_cross_entropy(z, labels)
                _notes["loss"].append((loss, len(labels)))
                return loss, dz

            def l2_penalty(weights, strength, _notes=notes):
                reg, grads = _exact_l2_penalty(weights, strength)
                _notes["reg"].append(reg)
                return reg, grads

            namespace.update(cross_entropy=cross_entropy, l2_penalty=l2_penalty)
            net = _ExactMLP([X.shape[1], 64, 10], seed=1234, tags=tags)
            history = fit(net, _ExactSGD(lr), X, y, X_val, y_val, epochs=epochs, batch_size=64, lam=lam, seed=seed,
                          verbose=False)
            notes["forward"] = net.calls
            results.append((history, [np.array(p) for p in net.params()], notes))
    finally:
        namespace.update(saved)
    return results


FIT_BAR = 0.80   # validation accuracy after 2 epochs on 2,000 images: correct fit 0.87-0.89; without updates 0.1


def check_fit(fit, epochs: int = 2, lr: float = 0.1, seed: int = 0, bar: float = FIT_BAR) -> float:
    """Fail unless ``fit`` trains as its contract says. With exact parts (network, SGD, loss, penalty) on 2,000
    MNIST training images: the network it trained reaches ``bar`` validation accuracy by the grader's own measure;
    its history has, per epoch, the mean of that epoch's mini-batch losses and the validation accuracy; it trains
    on batches with ``train=True`` and measures with ``train=False``; the same seed trains the same network and
    another seed another; and ``lam`` changes the training (weight decay shrinks the weights).

    Returns:
        The validation accuracy, measured by the grader.
    """
    __tracebackhide__ = True
    from da6401.grader.checks import call_student
    from da6401.student.objects import run_beside

    x, y = mnist_inputs("train")
    X, Y, Xv, Yv = x[:2000].astype(np.float64), y[:2000], x[55000:56000].astype(np.float64), y[55000:56000]
    lam, strong = 1e-4, 0.05
    runs = [(seed, lam), (seed, lam), (seed + 1, lam), (seed, strong)]
    results = call_student("fit", run_beside, fit, _fit_with_exact_parts, fit, X, Y, Xv, Yv, epochs, lr, runs)
    (history, params, notes), again, other_seed, decayed = results
    assert type(history) is dict and set(history) >= {"train_loss", "val_acc"}, (
        "fit must return the history dict with lists 'train_loss' and 'val_acc'")
    losses, accs = history["train_loss"], history["val_acc"]
    assert type(losses) is list and type(accs) is list and len(losses) == len(accs) == epochs, (
        f"after {epochs} epochs, history['train_loss'] and history['val_acc'] must each hold {epochs} values")
    assert all(isinstance(v, (int, float, np.floating)) and np.isfinite(v) for v in losses + accs), (
        "the history must hold finite numbers")
    weights, biases = [np.asarray(p, dtype=np.float64) for p in params[0::2]], [np.asarray(p) for p in params[1::2]]
    measured = float(np.mean(logits(weights, biases, "relu", Xv).argmax(1) == Yv))
    print(f"fit: {epochs} epochs on 2,000 images with exact parts: train loss {[round(float(v), 4) for v in losses]}, "
          f"validation accuracy {measured:.4f} (needs >= {bar})")
    assert measured >= bar, (f"the network fit trained reaches {measured:.4f} validation accuracy after {epochs} epochs; "
                             f"a working fit reaches {bar} (are the optimizer's steps taken on every batch?)")
    assert abs(float(accs[-1]) - measured) < 1e-3, (
        f"history['val_acc'][-1] is {float(accs[-1]):.4f}, but the trained network's validation accuracy is {measured:.4f}")
    assert losses[-1] < losses[0], f"the training loss did not fall: {losses}"
    _check_modes(notes["forward"])
    _check_epoch_losses(losses, notes)
    same = lambda a, b: all(np.array_equal(p, q) for p, q in zip(a, b))  # noqa: E731
    assert same(params, again[1]), ("two runs of fit with the same seed trained different networks: draw the "
                                    "shuffling from np.random.default_rng(seed) only")
    assert not same(params, other_seed[1]), ("fit with another seed trained the very same network: shuffle the "
                                             "training examples every epoch with the seeded rng")
    norm = lambda ps: sum(float(np.sum(np.asarray(w) ** 2)) for w in ps[0::2])  # noqa: E731
    assert norm(decayed[1]) < 0.95 * norm(params), (
        f"with lam={strong} the trained weights' squared norm is {norm(decayed[1]):.1f}, with lam={lam} "
        f"{norm(params):.1f}: lam does not act on training (add l2_penalty's gradients to the weights' gradients)")
    return measured


def _check_modes(calls: list[tuple[bool, str, int]]) -> None:
    """Training batches must go through forward with train=True (dropout on), validation with train=False."""
    __tracebackhide__ = True
    training = [train for train, tag, _ in calls if tag == "train"]
    validation = [train for train, tag, _ in calls if tag == "val"]
    assert training and all(training), (
        f"fit ran {training.count(False)} of {len(training)} training batches through model.forward with "
        "train=False: pass train=True while training, so that dropout acts")
    assert not any(validation), "fit measured the validation set with train=True: dropout must be off there"


def _check_epoch_losses(losses: list, notes: dict) -> None:
    """history['train_loss'][e] must be the mean of epoch e's mini-batch losses (each batch alike, or weighted by
    its size; with or without the L2 penalty)."""
    __tracebackhide__ = True
    batches = notes["loss"]
    if not batches or len(batches) % len(losses):
        return  # cross_entropy called for more than the training batches: nothing to compare with
    per = len(batches) // len(losses)
    regs = notes["reg"] if len(notes["reg"]) == len(batches) else [0.0] * len(batches)
    for e, got in enumerate(losses):
        part = slice(e * per, (e + 1) * per)
        values = np.array([v for v, _ in batches[part]])
        sizes = np.array([n for _, n in batches[part]], dtype=float)
        reg = np.array(regs[part])
        candidates = [np.mean(values), np.average(values, weights=sizes), np.mean(values + reg),
                      np.average(values + reg, weights=sizes)]
        assert any(abs(float(got) - c) <= 1e-6 * max(1.0, abs(c)) for c in candidates), (
            f"history['train_loss'][{e}] is {float(got):.6f}, but the mean loss of epoch {e + 1}'s {per} mini-batches "
            f"is {candidates[2]:.6f}: record the mean over the epoch's batches, not one batch's loss")
