#!/usr/bin/env python3
"""The careful loop a user writes today, as the baseline `segstream segment` is measured
against: OpenCV decodes a frame, `cv2.resize` shrinks it to the model's size (colour order and
normalisation on that small picture only), ONNX Runtime segments it, `cv2.resize` grows the
probability back to the frame, the pixels of the mask are tinted in place (`frame[mask] = …`,
nothing computed for the others; a multi-class model tints every pixel, with
`cv2.addWeighted`), and `cv2.VideoWriter` (MPEG-4 Part 2, `mp4v`) writes it; one frame at a
time. Not part of the product; needs `pip install opencv-python-headless onnxruntime numpy`.

It reads the model's card (segstream metadata: mean, std, input size, colours) so that both
sides do the same work: resize to the model's size, normalise, infer, sigmoid or softmax,
probabilities resized to the frame (bilinear) and thresholded or arg-maxed, overlay at 50 %.

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
    colors_bgr = model["colors"][:, ::-1]
    capture = cv2.VideoCapture(args.input)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25
    writer = None
    frames = 0
    started = time.perf_counter()
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        h, w = bgr.shape[:2]
        small = cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR),
                             cv2.COLOR_BGR2RGB)
        x = ((small.astype(np.float32) / 255.0 - model["mean"]) / model["std"]).transpose(2, 0, 1)[None]
        logits = session.run(None, {session.get_inputs()[0].name: x})[0][0]
        if logits.shape[0] == 1:
            probability = cv2.resize(0.5 + 0.5 * np.tanh(0.5 * logits[0]), (w, h))  # sigmoid
            mask = probability >= 0.5
            bgr[mask] = (bgr[mask] * 0.5 + colors_bgr[0] * 0.5).astype(np.uint8)
        else:
            e = np.exp(logits - logits.max(axis=0))
            planes = e / e.sum(axis=0)
            labels = np.stack([cv2.resize(p, (w, h)) for p in planes]).argmax(axis=0)
            bgr = cv2.addWeighted(bgr, 0.5, colors_bgr[labels].astype(np.uint8), 0.5, 0)
        if writer is None:
            writer = cv2.VideoWriter(args.output, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        writer.write(bgr)
        frames += 1
    if writer is not None:
        writer.release()
    seconds = time.perf_counter() - started
    print(json.dumps({"frames": frames, "seconds": seconds, "fps": frames / seconds, "codec": "mp4v"}))


if __name__ == "__main__":
    main()
