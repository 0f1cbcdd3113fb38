"""Training throughput of candidate ViT shapes on this CPU (research script; never released).

    OMP_NUM_THREADS=1 python vit_throughput.py "96,6,4,192 128,4,4,256" fp32,bf16 256

Each shape is dim,depth,heads,mlp_dim (patch 4, 65 tokens); prints images per second of a full training step.
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_dim):
        super().__init__()
        self.heads = heads
        self.norm1, self.qkv, self.proj = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        w = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(-1)
        x = x + self.proj((w @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, dim, depth, heads, mlp_dim, patch=4):
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(3 * patch * patch, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (32 // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x):
        p = F.unfold(x, self.patch, stride=self.patch).transpose(1, 2)
        x = self.embed(p)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


def main():
    shapes = [tuple(map(int, s.split(","))) for s in sys.argv[1].split()]
    precisions = sys.argv[2].split(",")
    batch = int(sys.argv[3])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}")
    for shape in shapes:
        for prec in precisions:
            torch.manual_seed(0)
            model = ViT(*shape)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
            times = []
            for step in range(6):
                t = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                times.append(time.perf_counter() - t)
            s = sorted(times[2:])[len(times[2:]) // 2]
            n = sum(p.numel() for p in model.parameters())
            print(f"{shape} {prec}: {n:,} params, {batch / s:.0f} img/s, {50000 / (batch / s):.0f} s/epoch", flush=True)


if __name__ == "__main__":
    main()
