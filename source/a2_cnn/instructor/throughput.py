"""Throughput (images/s) of one training step (augment+normalise+fwd+bwd+SGD step) for several nets."""
import sys, time, torch, argparse
sys.argv = sys.argv[:1] + sys.argv[1:]
import train_reference as train

torch.set_num_threads(2)
configs = [tuple(map(int, c.split(","))) for c in sys.argv[1].split(";")]
modes = sys.argv[2].split(",")  # e.g. fp32_cl,bf16_cl,fp32_nchw
bs = int(sys.argv[3]) if len(sys.argv) > 3 else 512
imgs = torch.randint(0, 256, (bs * 4, 3, 32, 32), dtype=torch.uint8)
labels = torch.randint(0, 10, (bs * 4,))
mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
for w in configs:
    for mode in modes:
        bf16 = mode.startswith("bf16")
        cl = torch.channels_last if mode.endswith("cl") else torch.contiguous_format
        m = train.Net(w).to(memory_format=cl)
        opt = train.make_optimizer(m, 0.1, 0.9, 5e-4)
        def step(i):
            idx = slice((i % 4) * bs, (i % 4 + 1) * bs)
            x = train.normalise(train.augment(imgs[idx]), mean, std).contiguous(memory_format=cl)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = m(x)
            loss = torch.nn.functional.cross_entropy(out.float(), labels[idx], label_smoothing=0.2)
            opt.zero_grad(); loss.backward(); opt.step()
        for i in range(2): step(i)
        n = 6; t0 = time.perf_counter()
        for i in range(n): step(i)
        dt = time.perf_counter() - t0
        ips = n * bs / dt
        print(f"widths={w} params={train.count_params(m)} mode={mode} bs={bs} img/s={ips:.0f} epoch_s={50000/ips:.1f}", flush=True)
