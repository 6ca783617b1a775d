#!/usr/bin/env python3
"""`segstream segment` against the careful loop (benches/naive_loop.py) on the same clips and
model, audio off on both sides, run alternately: per clip and per segstream
setting (its defaults, then `--preset ultrafast`), each pair's wall times, the median ratio
(segstream ÷ loop: below 1 means segstream is faster), each side's CPU seconds per frame (all
threads, from the children's rusage), output sizes and codecs.

segstream writes H.264 (x264, its --preset), the loop MPEG-4 Part 2 (`mp4v`, OpenCV's only
built-in MP4 encoder). Each side runs ONNX Runtime with its own default threads: segstream half
the cores (the other half decode, process and encode meanwhile), the loop `--threads` (2, its
fastest on 2 cores: one frame at a time, so a second thread shortens each frame's inference).
Needs the loop's packages and a release build.

Usage: python3 benches/vs_naive.py CLIP [CLIP …] [--model models/people.onnx] [--threads 2]
                                   [--pairs 3]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SETTINGS = {"default": [], "ultrafast": ["--preset", "ultrafast"]}


def run(command, output):
    """Wall seconds, CPU seconds (user + system of the child) and the output's size."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, os.path.getsize(output)


def frames_of(clip):
    import cv2

    capture = cv2.VideoCapture(clip)
    frames = 0
    while capture.grab():
        frames += 1
    return frames


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("clips", nargs="+")
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "people.onnx"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    binary = os.path.join(ROOT, "target", "release", "segstream")
    results = []
    with tempfile.TemporaryDirectory() as out:
        ours_out, loop_out = os.path.join(out, "ours.mp4"), os.path.join(out, "loop.mp4")
        loop = [sys.executable, os.path.join(HERE, "naive_loop.py"), args.model, "CLIP",
                loop_out, "--threads", str(args.threads)]
        for clip in args.clips:
            frames = frames_of(clip)
            for name, extra in SETTINGS.items():
                ours = [binary, "segment", clip, "-o", ours_out, "--model", args.model,
                        "--no-audio", *extra]
                pairs = []
                for pair in range(args.pairs):
                    a = run(ours, ours_out)
                    b = run([clip if part == "CLIP" else part for part in loop], loop_out)
                    pairs.append((a, b))
                    print(f"{os.path.basename(clip)} {name} pair {pair + 1}: segstream {a[0]:.2f} s, "
                          f"loop {b[0]:.2f} s, ratio {a[0] / b[0]:.3f}", flush=True)
                cpu = lambda side: statistics.median(p[side][1] for p in pairs) / frames * 1000
                result = {
                    "clip": os.path.basename(clip), "frames": frames, "segstream": name,
                    "median_ratio": statistics.median(a[0] / b[0] for a, b in pairs),
                    "wall_s": {"segstream": statistics.median(a[0] for a, _ in pairs),
                               "loop": statistics.median(b[0] for _, b in pairs)},
                    "cpu_ms_per_frame": {"segstream": cpu(0), "loop": cpu(1)},
                    "bytes": {"segstream": pairs[-1][0][2], "loop": pairs[-1][1][2]},
                    "codecs": {"segstream": "h264 (x264)", "loop": "mp4v"},
                }
                results.append(result)
                print(json.dumps(result), flush=True)
    print(json.dumps({"model": args.model, "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
