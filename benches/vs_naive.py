#!/usr/bin/env python3
"""`segstream segment` against the naive loop (benches/naive_loop.py) on the same clip, model
and thread count, audio off on both sides, run alternately; prints each pair and the median
ratio of wall times (segstream ÷ loop: below 1 means segstream is faster).

segstream writes H.264 (x264, its --preset), the loop MPEG-4 Part 2 (`mp4v`, OpenCV's only
built-in MP4 encoder). Needs the naive loop's packages and a release build.

Usage: python3 benches/vs_naive.py CLIP [--model models/people.onnx] [--threads 2] [--pairs 3]
                                        [-- extra segment options]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def timed(command):
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("clip")
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "people.onnx"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("extra", nargs="*")
    args = parser.parse_args()
    binary = os.path.join(ROOT, "target", "release", "segstream")
    ratios = []
    with tempfile.TemporaryDirectory() as out:
        ours = [binary, "segment", args.clip, "-o", os.path.join(out, "ours.mp4"), "--model",
                args.model, "--threads", str(args.threads), "--no-audio", *args.extra]
        loop = [sys.executable, os.path.join(HERE, "naive_loop.py"), args.model, args.clip,
                os.path.join(out, "loop.mp4"), "--threads", str(args.threads)]
        for pair in range(args.pairs):
            a, b = timed(ours), timed(loop)
            ratios.append(a / b)
            print(f"pair {pair + 1}: segstream {a:.2f} s, loop {b:.2f} s, ratio {a / b:.3f}")
    ratio = statistics.median(ratios)
    print(json.dumps({"clip": args.clip, "model": args.model, "threads": args.threads,
                      "median_ratio": ratio, "speedup": 1 / ratio,
                      "codecs": {"segstream": "h264 (x264)", "loop": "mp4v"}}))


if __name__ == "__main__":
    main()
