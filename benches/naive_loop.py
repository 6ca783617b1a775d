#!/usr/bin/env python3
"""The loop people write today, as the baseline `segstream segment` is measured against:
OpenCV decodes a frame, ONNX Runtime segments it, the mask is overlaid, cv2.VideoWriter
(MPEG-4 Part 2, `mp4v`) writes it; one frame at a time. Not part of the product; needs
`pip install opencv-python-headless onnxruntime numpy`.

It reads the model's card (segstream metadata: mean, std, input size, colours) so that both
sides do the same work: resize to the model's size, normalise, infer, sigmoid or softmax,
probabilities resized to the frame (bilinear) and thresholded or arg-maxed, as a user would,
overlay at 50 %.

Usage: python3 benches/naive_loop.py MODEL INPUT OUTPUT [--threads 2]
Prints one JSON line: frames, seconds, fps, codec.
"""
import argparse
import json
import time

import cv2
import numpy as np
import onnxruntime as ort


def card(session):
    meta = session.get_modelmeta().custom_metadata_map
    read = lambda key, default: json.loads(meta.get("segstream." + key, json.dumps(default)))
    return {
        "mean": np.array(read("mean", [0.485, 0.456, 0.406]), np.float32),
        "std": np.array(read("std", [0.229, 0.224, 0.225]), np.float32),
        "size": read("input_size", [256, 256]),
        "colors": np.array(read("colors", [[230, 25, 75]]), np.float32),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    model = card(session)
    height, width = model["size"]
    capture = cv2.VideoCapture(args.input)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25
    writer = None
    frames = 0
    started = time.perf_counter()
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
        x = ((small.astype(np.float32) / 255.0 - model["mean"]) / model["std"]).transpose(2, 0, 1)[None]
        logits = session.run(None, {session.get_inputs()[0].name: x})[0][0]
        h, w = rgb.shape[:2]
        if logits.shape[0] == 1:
            probability = cv2.resize(1 / (1 + np.exp(-logits[0])), (w, h))
            labels = (probability >= 0.5).astype(np.int64)
            tint = np.zeros((h, w, 3), np.float32)
            tint[labels == 1] = model["colors"][0]
            weight = (labels == 1)[..., None] * 0.5
        else:
            e = np.exp(logits - logits.max(axis=0))
            planes = e / e.sum(axis=0)
            labels = np.stack([cv2.resize(p, (w, h)) for p in planes]).argmax(axis=0)
            tint = model["colors"][labels]
            weight = 0.5
        out = (rgb * (1 - weight) + tint * weight).astype(np.uint8)
        if writer is None:
            writer = cv2.VideoWriter(args.output, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        writer.write(cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        frames += 1
    if writer is not None:
        writer.release()
    seconds = time.perf_counter() - started
    print(json.dumps({"frames": frames, "seconds": seconds, "fps": frames / seconds, "codec": "mp4v"}))


if __name__ == "__main__":
    main()
