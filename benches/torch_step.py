#!/usr/bin/env python3
"""Step time of segstream's default U-Net (depth 4, base 16) in PyTorch, for comparison with
`segstream train` on the same machine. Not part of the product; needs `pip install torch`.

Usage: python3 benches/torch_step.py [--size 128] [--batch 8] [--steps 10] [--device cpu|cuda]
Same layers as src/train/model.rs: (3x3 conv, BN, ReLU) x2 per level, 2x2 max-pool down,
2x2 transposed conv up, skip concatenation, 1x1 head; BCE-with-logits + Adam.
"""
import argparse
import statistics
import time

import torch
from torch import nn


def double_conv(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class UNet(nn.Module):
    def __init__(self, depth=4, base=16, classes=1):
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(double_conv(c_in, c) for c_in, c in zip([3] + widths[:-2], widths[:-1]))
        self.bottom = double_conv(widths[-2], widths[-1])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth)))
        self.blocks = nn.ModuleList(double_conv(widths[i] * 2, widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(base, classes, 1)

    def forward(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, block, skip in zip(self.ups, self.blocks, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = UNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = (torch.rand(args.batch, 1, args.size, args.size, device=device) > 0.5).float()
    times = []
    for step in range(args.steps + 3):
        started = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        sync()
        if step >= 3:
            times.append(time.perf_counter() - started)
    median = statistics.median(times)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, batch {args.batch} at "
          f"{args.size}x{args.size}: {median:.3f} s/step, {args.batch / median:.1f} images/s")


if __name__ == "__main__":
    main()
