#!/usr/bin/env python3
"""The peer a user would otherwise pick: onnxruntime (PyPI) running the bundle's dense.onnx in
f32, and an int8 version made by onnxruntime's own quantizer (dynamic, per-channel weights),
with the same thread counts as svit-edge bench. A dense model's time does not depend on the
picture, so the inputs are fixed random tensors. Prints and writes JSON in svit-edge bench's shape, with "engine": "onnxruntime".
Times cover the model only (no decode, resize or post-processing): compare them with tract's
embed + gates + gather/scatter + blocks + head.

usage: ort_bench.py BUNDLE OUT.json [--frames 200] [--warmup 20] [--threads 1,2] [--keep-faster EARLIER.json]

--keep-faster: per configuration, report the faster (by mean) of this run and an earlier one
(scripts/benchmarks.sh runs this just before and just after tract's bench, so a drift of this
shared machine during one run cannot make onnxruntime look slower than it is).
"""
import argparse, glob, json, os, platform, tempfile, time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic


def pct(v):
    s = sorted(v)
    at = lambda p: s[max(1, min(len(s), int(np.ceil(p / 100 * len(s))))) - 1]
    return {"p50": at(50), "p95": at(95), "p99": at(99), "mean": float(np.mean(s))}


def inputs(manifest):
    s = manifest["config"]["image_size"]
    rng = np.random.default_rng(777)
    return [rng.standard_normal((1, 3, s, s), dtype=np.float32) for _ in range(8)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("out")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--keep-faster")
    a = ap.parse_args()
    manifest = json.load(open(os.path.join(a.bundle, "manifest.json")))
    dense = os.path.join(a.bundle, "dense.onnx")
    tmp = tempfile.mkdtemp()
    int8 = os.path.join(tmp, "dense_int8.onnx")
    quantize_dynamic(dense, int8, weight_type=QuantType.QInt8, per_channel=True)
    xs = inputs(manifest)
    configs = []
    for precision, path in [("f32", dense), ("int8", int8)]:
        for th in [int(t) for t in a.threads.split(",")]:
            so = ort.SessionOptions()
            so.intra_op_num_threads = th
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            t0 = time.perf_counter()
            for i in range(a.warmup):
                sess.run(None, {name: xs[i % len(xs)]})
            warm = (time.perf_counter() - t0) * 1e3
            times = []
            for i in range(a.frames):
                t = time.perf_counter()
                sess.run(None, {name: xs[i % len(xs)]})
                times.append((time.perf_counter() - t) * 1e3)
            configs.append({
                "engine": "onnxruntime", "onnxruntime": ort.__version__, "precision": precision,
                "threshold": 0.0, "mode": "dense", "threads": th, "frames": a.frames,
                "warmup_frames": a.warmup, "warmup_ms": warm, "total_ms": pct(times),
                "backbone_ms": None, "kept_fraction": 1.0, "gmacs": None,
            })
            print(f"onnxruntime {precision:>4} threads {th}: p50 {configs[-1]['total_ms']['p50']:.2f} ms")
    if a.keep_faster:
        earlier = {(c["precision"], c["threads"]): c for c in json.load(open(a.keep_faster))["configs"]}
        for i, c in enumerate(configs):
            e = earlier.get((c["precision"], c["threads"]))
            if e and e["total_ms"]["mean"] < c["total_ms"]["mean"]:
                configs[i] = e
        for c in configs:
            c["runs"] = 2
    report = {"bundle": a.bundle, "cpu": platform.processor() or platform.machine(), "configs": configs}
    json.dump(report, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
