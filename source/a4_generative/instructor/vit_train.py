"""Research run of the reference ViT recipe outside the notebook (never released).

    OMP_NUM_THREADS=1 python vit_train.py --epochs 10 [--no-pos] [--dim 96 --depth 4 --heads 4 --mlp 192 --lr 2e-3]

Same model and recipe as vit.ipynb's reference: patch 4, AdamW, warm-up + cosine, label smoothing 0.1,
reflect-pad-4 crop + flip, batch 256, bf16 autocast. Prints test accuracy per epoch and the training time.
"""
import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from da6401.data import load_cifar10
from vit_throughput import ViT


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--dim", type=int, default=96)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp", type=int, default=192)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--no-pos", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    tr, ytr = load_cifar10("train")
    te, yte = load_cifar10("test")
    mean = torch.tensor(tr.reshape(-1, 3).mean(0) / 255, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor((tr.reshape(-1, 3) / 255).std(0), dtype=torch.float32).view(1, 3, 1, 1)
    xtr = torch.from_numpy(tr).permute(0, 3, 1, 2).contiguous()
    ytr = torch.from_numpy(ytr)
    xte = (torch.from_numpy(te).permute(0, 3, 1, 2).float() / 255 - mean) / std
    yte = torch.from_numpy(yte)
    model = ViT(args.dim, args.depth, args.heads, args.mlp)
    if args.no_pos:
        model.pos.data.zero_()
        model.pos.requires_grad_(False)
    decay = [p for p in model.parameters() if p.ndim >= 2 and p.requires_grad]
    other = [p for p in model.parameters() if p.ndim < 2 and p.requires_grad]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=args.lr)
    steps_per_epoch = len(xtr) // args.batch
    total = args.epochs * steps_per_epoch
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm))))
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        t0, tot = time.perf_counter(), 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            x = xtr[idx].float() / 255
            n = len(x)
            x = F.pad(x, (4,) * 4, mode="reflect")
            dy = torch.randint(0, 9, (n,), generator=g)
            dx = torch.randint(0, 9, (n,), generator=g)
            rows = (dy[:, None] + torch.arange(32))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(32))[:, None, None, :]
            x = x[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None], rows, cols]
            flip = torch.rand(n, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            x = (x - mean) / std
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), ytr[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += loss.item()
        model.eval()
        correct = 0
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for s in range(0, 10000, 1000):
                correct += (model(xte[s:s + 1000]).argmax(1) == yte[s:s + 1000]).sum().item()
        print(f"epoch {epoch + 1} loss {tot / steps_per_epoch:.4f} test acc {correct / 10000:.4f} "
              f"({time.perf_counter() - t0:.0f} s, total {time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
