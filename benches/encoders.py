#!/usr/bin/env python3
"""Encoder settings by measurement: the CPU each candidate spends per frame, the file it makes
and its quality (PSNR against the uncompressed frames), on segstream's real output.

Per clip, `segstream segment` writes its overlay frames uncompressed (`.y4m`: I420, exactly as
every encoder receives them), unwrapped to raw frames; each candidate then encodes those same frames in
`gst-launch-1.0` (filesrc ! rawvideoparse ! encoder ! muxer), timed by the child's CPU seconds
less those of reading the frames alone; its output is decoded back to I420 and compared with
the uncompressed frames: PSNR of Y, and of Y, U and V together (every sample weighs the same),
and SSIM of Y.

Usage: python3 benches/encoders.py CLIP [CLIP …] [--frames 300] [--group h264|vp8|live|all]
Needs numpy and a release build.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
X264 = "x264enc bframes=0 "
LIVE = "x264enc tune=zerolatency key-int-max=30 "
CANDIDATES = {
    "h264": [
        ("veryfast, 2048 kb/s (before)", X264 + "speed-preset=veryfast", "mp4mux", "mp4"),
        ("superfast, 2048 kb/s", X264 + "speed-preset=superfast", "mp4mux", "mp4"),
        ("ultrafast, 2048 kb/s", X264 + "speed-preset=ultrafast", "mp4mux", "mp4"),
    ]
    + [
        (f"{preset}, quality {q}", X264 + f"speed-preset={preset} pass=qual quantizer={q}",
         "mp4mux", "mp4")
        for preset in ("veryfast", "superfast", "ultrafast")
        for q in (18, 21, 23)
    ]
    + [
        (f"superfast + {extra}, 2048 kb/s", X264 + f"speed-preset=superfast {extra}", "mp4mux",
         "mp4")
        for extra in ("me=hex", "subme=2", "mb-tree=true rc-lookahead=10",
                      "mb-tree=true rc-lookahead=5", "mb-tree=true rc-lookahead=20")
    ]
    + [
        (f"superfast + mb-tree, quality {q}",
         X264 + f"speed-preset=superfast mb-tree=true rc-lookahead=10 pass=qual quantizer={q}",
         "mp4mux", "mp4")
        for q in (18, 21, 23)
    ]
    + [
        (f"superfast + mb-tree, quality {q} uncapped",
         X264 + f"speed-preset=superfast mb-tree=true rc-lookahead=10 pass=qual quantizer={q} "
         "bitrate=50000", "mp4mux", "mp4")
        for q in (18, 19, 20)
    ]
    + [
        (f"veryfast + {extra}, 2048 kb/s", X264 + f"speed-preset=veryfast {extra}", "mp4mux",
         "mp4")
        for extra in ("me=dia", "subme=1", "analyse=i4x4+i8x8", "me=dia subme=1")
    ]
    + [
        (f"ultrafast + {extra}, 2048 kb/s", X264 + f"speed-preset=ultrafast {extra}", "mp4mux",
         "mp4")
        for extra in ("cabac=true", "cabac=true mb-tree=true rc-lookahead=10",
                      "cabac=true mb-tree=true rc-lookahead=10 dct8x8=true")
    ],
    "vp8": [
        ("VP8 cpu-used 8, 256 kb/s (before)", "vp8enc deadline=1 cpu-used=8", "webmmux", "webm"),
        ("VP8 cpu-used 8, 2048 kb/s", "vp8enc deadline=1 cpu-used=8 target-bitrate=2048000",
         "webmmux", "webm"),
        ("VP8 cpu-used 16, 2048 kb/s", "vp8enc deadline=1 cpu-used=16 target-bitrate=2048000",
         "webmmux", "webm"),
    ]
    + [
        (f"VP8 cpu-used {cpu}, cq {cq}",
         f"vp8enc deadline=1 cpu-used={cpu} end-usage=cq cq-level={cq} target-bitrate=8000000",
         "webmmux", "webm")
        for cpu in (8, 16)
        for cq in (10, 20)
    ],
    "live": [
        ("ultrafast zerolatency, 2048 kb/s (before)", LIVE + "speed-preset=ultrafast",
         "matroskamux", "mkv"),
        ("superfast zerolatency, 2048 kb/s", LIVE + "speed-preset=superfast",
         "matroskamux", "mkv"),
        ("veryfast zerolatency, 2048 kb/s", LIVE + "speed-preset=veryfast",
         "matroskamux", "mkv"),
    ]
    + [
        (f"{preset} zerolatency, quality {q}", LIVE + f"speed-preset={preset} pass=qual quantizer={q}",
         "matroskamux", "mkv")
        for preset in ("ultrafast", "superfast")
        for q in (21, 23)
    ],
}


def cpu_of(command):
    """CPU seconds (user + system) of a child running `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def probe(clip):
    """Width, height and frame rate (as a fraction string) of `clip`'s video."""
    out = subprocess.run(["gst-discoverer-1.0", clip], capture_output=True, text=True).stdout
    fields = {}
    for line in out.splitlines():
        key, _, value = line.strip().partition(": ")
        fields.setdefault(key, value)
    return int(fields["Width"]), int(fields["Height"]), fields["Frame rate"]


def reference(clip, frames, out):
    """segstream's overlay frames of `clip` (at most `frames`), uncompressed I420, in `out`."""
    binary = os.path.join(ROOT, "target", "release", "segstream")
    source = (f"filesrc location={clip} ! decodebin ! videoconvert ! "
              f"identity eos-after={frames + 1} ! appsink name=frames")
    y4m = out + ".y4m"
    subprocess.run([binary, "segment", "--source-pipeline", source, "-o", y4m],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["gst-launch-1.0", "-q", *f"filesrc location={y4m} ! y4mdec ! "
                    f"filesink location={out}".split()], check=True)


def psnr(mse):
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def box_means(planes, window):
    """Means over every `window`×`window` square of each frame in `planes` (frames×h×w)."""
    sums = planes.cumsum(1).cumsum(2)
    sums = np.pad(sums, ((0, 0), (1, 0), (1, 0)))
    total = (sums[:, window:, window:] - sums[:, :-window, window:]
             - sums[:, window:, :-window] + sums[:, :-window, :-window])
    return total / (window * window)


def ssim(a, b, window=8):
    """Mean SSIM of the luma planes `a` and `b` (frames×h×w) over 8×8 windows (as x264's
    --ssim): it weighs structure where PSNR weighs every error alike, so settings tuned for
    PSNR (adaptive quantisation off) cannot win on it alone."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a.astype(np.float64), b.astype(np.float64)
    ma, mb = box_means(a, window), box_means(b, window)
    va = box_means(a * a, window) - ma * ma
    vb = box_means(b * b, window) - mb * mb
    cov = box_means(a * b, window) - ma * mb
    return float((((2 * ma * mb + c1) * (2 * cov + c2))
                  / ((ma * ma + mb * mb + c1) * (va + vb + c2))).mean())


def compare(raw, decoded, width, height):
    """PSNR of Y and of all planes, over every frame (MSE averaged, then PSNR), and SSIM of Y."""
    size = width * height * 3 // 2
    a = np.fromfile(raw, dtype=np.uint8)
    b = np.fromfile(decoded, dtype=np.uint8)
    frames = min(len(a), len(b)) // size
    if len(a) != len(b):
        print(f"  (frame counts differ: {len(a) // size} vs {len(b) // size})", file=sys.stderr)
    a = a[: frames * size].reshape(frames, size).astype(np.int32)
    b = b[: frames * size].reshape(frames, size).astype(np.int32)
    d2 = (a - b) ** 2
    luma = [x[:, : width * height].reshape(frames, height, width) for x in (a, b)]
    return psnr(d2[:, : width * height].mean()), psnr(d2.mean()), ssim(*luma)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("clips", nargs="+")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--group", default="all", choices=["all", *CANDIDATES])
    parser.add_argument("--only", default="", help="candidates whose name contains this")
    args = parser.parse_args()
    groups = list(CANDIDATES) if args.group == "all" else [args.group]
    with tempfile.TemporaryDirectory() as tmp:
        for clip in args.clips:
            width, height, rate = probe(clip)
            raw = os.path.join(tmp, "frames.yuv")
            reference(clip, args.frames, raw)
            frames = os.path.getsize(raw) // (width * height * 3 // 2)
            read = (f"filesrc location={raw} ! rawvideoparse format=i420 width={width} "
                    f"height={height} framerate={rate}")
            base = cpu_of(["gst-launch-1.0", "-q", *f"{read} ! fakesink".split()])
            print(f"\n{os.path.basename(clip)}: {width}×{height}, {frames} frames at {rate} fps")
            print(f"{'encoder':<44} {'CPU ms/frame':>12} {'kB':>8} {'kb/s':>7} "
                  f"{'PSNR Y':>7} {'PSNR YUV':>8} {'SSIM Y':>7}")
            num, _, den = rate.partition("/")
            fps = float(num) / float(den or 1)
            for group in groups:
                for name, encoder, mux, ext in CANDIDATES[group]:
                    if args.only not in name:
                        continue
                    out = os.path.join(tmp, f"out.{ext}")
                    cpu = cpu_of(["gst-launch-1.0", "-q",
                                  *f"{read} ! {encoder} ! {mux} ! filesink location={out}".split()])
                    decoded = os.path.join(tmp, "decoded.yuv")
                    subprocess.run(["gst-launch-1.0", "-q", *(
                        f"filesrc location={out} ! decodebin ! videoconvert ! "
                        f"video/x-raw,format=I420 ! filesink location={decoded}").split()],
                        check=True)
                    y, yuv, structure = compare(raw, decoded, width, height)
                    size = os.path.getsize(out)
                    rate_kbps = size * 8 / 1000 / (frames / fps)
                    print(f"{name:<44} {(cpu - base) / frames * 1e3:>12.2f} {size / 1e3:>8.0f} "
                          f"{rate_kbps:>7.0f} {y:>7.2f} {yuv:>8.2f} {structure:>7.4f}", flush=True)


if __name__ == "__main__":
    main()
