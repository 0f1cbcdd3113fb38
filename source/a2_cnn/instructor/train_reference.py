"""Fast CIFAR-10 training on a CPU: a small airbench-style CNN.

Recipe (after Page's "How to train your ResNet", hlb-CIFAR10 and airbench):
BatchNorm everywhere, three conv blocks with narrow widths, max-pooling,
SGD with Nesterov momentum and a linear warm-up / linear decay schedule,
label smoothing 0.2, random crop (reflect padding) + horizontal flip done as
batched tensor ops, per-channel normalisation with training-set statistics,
channels_last memory format and flip test-time augmentation at evaluation.

Example (the best run in RESULTS.md):
    DA6401_DATA_MIRROR=/work/shared/data python train_reference.py --epochs 10 --bf16 --save best.pt
"""
import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- data
def load_data():
    """CIFAR-10 as uint8 tensors (N, 3, 32, 32) and int64 labels."""
    from da6401.data import load_cifar10

    x_train, y_train = load_cifar10("train")
    x_test, y_test = load_cifar10("test")
    to_nchw = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()
    return to_nchw(x_train), torch.from_numpy(y_train), to_nchw(x_test), torch.from_numpy(y_test)


def channel_stats(images):
    """Per-channel mean and std (in [0, 1] units) of uint8 NCHW images."""
    x = images.float().div_(255)
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


def normalise(images, mean, std):
    """uint8 NCHW -> float32, scaled to [0, 1], then standardised per channel."""
    x = images.float().div_(255)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def augment(images, pad=2):
    """Random crop (reflect-padded by `pad` pixels) + random horizontal flip, per image.

    Works on a whole batch at once: uint8 or float NCHW in, same shape out.
    """
    n, c, h, w = images.shape
    if pad > 0:
        padded = F.pad(images.float(), (pad, pad, pad, pad), mode="reflect").to(images.dtype)
        dy = torch.randint(0, 2 * pad + 1, (n,))
        dx = torch.randint(0, 2 * pad + 1, (n,))
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (n, 1, h, 1)
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (n, 1, 1, w)
        images = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    flip = torch.rand(n) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


# ---------------------------------------------------------------------------- models
def conv_bn(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()]


class ConvBlock(nn.Module):
    """conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU (halves the resolution)."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x):
        x = F.gelu(self.bn1(self.pool(self.conv1(x))))
        return F.gelu(self.bn2(self.conv2(x)))


class Net(nn.Module):
    """Airbench-style CNN: stem conv, three ConvBlocks (each halves the resolution), global max-pool, linear.

    widths = (stem, block1, block2, block3); (32, 64, 128, 192) has ~0.83M parameters.
    whiten=True replaces the 3x3 conv+BN stem by a frozen 2x2 "patch-whitening" conv
    (airbench): its filters are set from the eigenvectors of the covariance of 2x2 training
    patches by init_whitening(); the stem width must then be 24 (= 2 x 3*2*2).
    """

    def __init__(self, widths=(32, 64, 128, 192), num_classes=10, whiten=False, logit_scale=0.125):
        super().__init__()
        stem, w1, w2, w3 = widths
        if whiten:
            assert stem == 24, "the whitening stem has 2 * 3 * 2 * 2 = 24 channels"
            self.stem = nn.Sequential(nn.Conv2d(3, stem, 2, padding=0, bias=True), nn.GELU())  # 32x32 -> 31x31
        else:
            self.stem = nn.Sequential(*conv_bn(3, stem))
        self.blocks = nn.Sequential(ConvBlock(stem, w1), ConvBlock(w1, w2), ConvBlock(w2, w3))
        self.head = nn.Linear(w3, num_classes, bias=False)
        self.logit_scale = logit_scale  # airbench scales the logits down; it helps with a high LR

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = torch.amax(x, dim=(2, 3))  # global max-pool
        return self.head(x) * self.logit_scale


@torch.no_grad()
def init_whitening(conv, images, eps=5e-4):
    """Set a (frozen) conv's filters to whiten its input patches: for each eigenvector v of the
    patch covariance, the filters +v/sqrt(lambda+eps) and -v/sqrt(lambda+eps)."""
    c, (kh, kw) = images.shape[1], conv.kernel_size
    patches = images.unfold(2, kh, 1).unfold(3, kw, 1)  # (n, c, h', w', kh, kw)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kh * kw).double()
    cov = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
    filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).flip(0)  # largest first
    filters = filters.reshape(-1, c, kh, kw).float()
    conv.weight.copy_(torch.cat([filters, -filters]))
    conv.weight.requires_grad_(False)


class Linear(nn.Module):
    """Weak baseline: a linear classifier on the flattened normalised pixels."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


class MLP(nn.Module):
    """Weak baseline: 3072 -> hidden -> 10 with ReLU."""

    def __init__(self, hidden=512, num_classes=10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)


def build_model(args):
    if args.model == "cnn":
        return Net(tuple(args.widths), whiten=args.whiten)
    if args.model == "linear":
        return Linear()
    if args.model == "mlp":
        return MLP(args.hidden)
    raise ValueError(args.model)


def count_params(model):
    return sum(p.numel() for p in model.parameters())


# -------------------------------------------------------------------------- training
def make_optimizer(model, lr, momentum, weight_decay):
    """SGD + Nesterov; no weight decay on BatchNorm parameters and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)


def lr_at(step, total_steps, peak_lr, warmup_frac):
    """Linear warm-up from 0 to peak over warmup_frac of training, then linear decay to 0."""
    warmup = max(1, int(warmup_frac * total_steps))
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    return peak_lr * max(0.0, (total_steps - step) / (total_steps - warmup))


def train_one_epoch(model, optimizer, images, labels, mean, std, args, step, total_steps):
    """One pass over a fresh shuffle of the training set. Returns (mean loss, accuracy, next step)."""
    model.train()
    n = len(images)
    order = torch.randperm(n)
    total_loss, correct, seen = 0.0, 0, 0
    for start in range(0, n - args.batch_size + 1, args.batch_size):  # drop the last partial batch
        idx = order[start:start + args.batch_size]
        x = normalise(augment(images[idx], args.pad), mean, std).contiguous(memory_format=torch.channels_last)
        y = labels[idx]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps, args.lr, args.warmup)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return total_loss / seen, correct / seen, step


@torch.no_grad()
def evaluate(model, images, labels, mean, std, tta=False, batch_size=1000, bf16=False):
    """Test accuracy; with tta=True the logits of the image and its mirror image are averaged."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        x = normalise(images[start:start + batch_size], mean, std).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()
            if tta:
                logits = logits + model(x.flip(3)).float()
        correct += (logits.argmax(1) == labels[start:start + batch_size]).sum().item()
    return correct / len(images)


# ------------------------------------------------------------------------------ main
def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["cnn", "linear", "mlp"], default="cnn")
    p.add_argument("--widths", type=int, nargs=4, default=[32, 64, 128, 192], help="stem, block1, block2, block3")
    p.add_argument("--whiten", action="store_true", help="frozen 2x2 patch-whitening stem (needs stem width 24)")
    p.add_argument("--hidden", type=int, default=512, help="MLP hidden width")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=0.4, help="peak learning rate")
    p.add_argument("--warmup", type=float, default=0.2, help="fraction of steps spent warming up")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.2)
    p.add_argument("--pad", type=int, default=2, help="reflect padding for random crops (0 = no crop)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (fast on CPUs with AMX / AVX512-BF16)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--subset", type=int, default=0, help="use only this many train/test images (smoke tests)")
    p.add_argument("--eval-every-epoch", action="store_true", help="report test accuracy each epoch (not timed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default="", help="save the fp16 state_dict here")
    return p.parse_args()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    x_train, y_train, x_test, y_test = load_data()
    if args.subset:
        keep_train, keep_test = torch.randperm(len(x_train))[:args.subset], torch.randperm(len(x_test))[:args.subset]
        x_train, y_train = x_train[keep_train], y_train[keep_train]
        x_test, y_test = x_test[keep_test], y_test[keep_test]  # random: the test set may be sorted by class
    mean, std = channel_stats(x_train)

    model = build_model(args)
    if args.model == "cnn" and args.whiten:
        init_whitening(model.stem[0], normalise(x_train[:5000], mean, std))
    model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, args.lr, args.momentum, args.weight_decay)
    steps_per_epoch = len(x_train) // args.batch_size
    total_steps = args.epochs * steps_per_epoch
    print(f"model={args.model} params={count_params(model):,} epochs={args.epochs} steps={total_steps}", flush=True)

    step, train_time = 0, 0.0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        loss, acc, step = train_one_epoch(model, optimizer, x_train, y_train, mean, std, args, step, total_steps)
        epoch_time = time.perf_counter() - t0
        train_time += epoch_time
        line = f"epoch {epoch:2d}  loss {loss:.4f}  train_acc {acc:.4f}  epoch_s {epoch_time:6.1f}  total_s {train_time:6.1f}"
        if args.eval_every_epoch:
            line += f"  test_acc {evaluate(model, x_test, y_test, mean, std, bf16=args.bf16):.4f}"
        print(line, flush=True)

    t0 = time.perf_counter()
    test_acc = evaluate(model, x_test, y_test, mean, std, tta=False, bf16=args.bf16)
    test_acc_tta = evaluate(model, x_test, y_test, mean, std, tta=True, bf16=args.bf16)
    eval_time = time.perf_counter() - t0
    print(f"RESULT model={args.model} widths={args.widths} params={count_params(model)} epochs={args.epochs} "
          f"train_s={train_time:.1f} test_acc={test_acc:.4f} test_acc_tta={test_acc_tta:.4f} eval_s={eval_time:.1f}",
          flush=True)

    if args.save:
        state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        torch.save({"state_dict": state, "widths": args.widths, "mean": mean, "std": std}, args.save)
        print(f"saved {args.save}")


if __name__ == "__main__":
    main()
