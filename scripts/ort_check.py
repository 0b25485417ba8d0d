#!/usr/bin/env python3
"""Cross-checks a bundle's dense.onnx between engines: onnxruntime (from PyPI) against tract,
and the runtime's stage pipeline at threshold 0 against the single dense graph.

usage: ort_check.py BUNDLE REFERENCE_DIR
REFERENCE_DIR comes from `svit-export reference --bundle BUNDLE --image X.png --out DIR`.
Also runs the `onnx` checker on every graph of the bundle. Exits 1 on any difference > 1e-4.
"""
import json, os, sys

import numpy as np
import onnx
import onnxruntime as ort

TOL = 1e-4


def load(d, name, shape=None):
    a = np.fromfile(os.path.join(d, name), dtype="<f4")
    return a.reshape(shape) if shape else a


def main():
    bundle, ref = sys.argv[1], sys.argv[2]
    manifest = json.load(open(os.path.join(bundle, "manifest.json")))
    s = manifest["config"]["image_size"]
    for rel in sorted(manifest["files"]):
        onnx.checker.check_model(onnx.load(os.path.join(bundle, rel)))
    print(f"onnx checker: {len(manifest['files'])} graphs valid")
    x = load(ref, "input.f32", (1, 3, s, s))
    sess = ort.InferenceSession(os.path.join(bundle, "dense.onnx"), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"image": x})
    worst = 0.0
    for name, o in zip(["heat", "boxes", "coef", "protos"], outs):
        t = load(ref, f"tract_dense_{name}.f32")
        p = load(ref, f"stages_t0_{name}.f32")
        d_ort = float(np.abs(o.reshape(-1) - t).max())
        d_stage = float(np.abs(p - t).max())
        worst = max(worst, d_ort, d_stage)
        print(f"{name:>7}: |onnxruntime - tract| = {d_ort:.2e}   |stages(t=0) - dense| = {d_stage:.2e}")
    ok = worst <= TOL
    print("ort_check: OK" if ok else f"ort_check: max difference {worst:.2e} > {TOL}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
