#!/usr/bin/env python3
"""int8 graphs in the form onnxruntime runs fastest, made by onnxruntime's own quantizer
(dynamic: int8 per-channel weights, activation ranges taken from each run's data, so no
calibration set; measured faster on onnxruntime than its static QDQ and than tract's
QLinearMatMul graphs, QUANTIZATION.md).

  ort_quantize.py stages BUNDLE     adds BUNDLE/ort-int8/: every f32 stage graph quantized,
                                    hashed into the manifest; `--engine onnxruntime
                                    --precision int8` then runs these instead of tract's int8/
  ort_quantize.py dense BUNDLE OUT  onnxruntime's int8 version of BUNDLE/dense.onnx, the peer a
                                    user would otherwise pick (`svit-edge bench --dense-int8 OUT`)

Check the accuracy before shipping: svit-export eval --engine onnxruntime --precision int8.
"""
import glob, hashlib, json, logging, os, sys

import onnxruntime
from onnxruntime.quantization import QuantType, quantize_dynamic

logging.disable(logging.WARNING)  # its advice to run shape inference first: the graphs have shapes


def quantize(src, dst):
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True)


def stages(bundle):
    manifest_path = os.path.join(bundle, "manifest.json")
    m = json.load(open(manifest_path))
    out = os.path.join(bundle, "ort-int8")
    os.makedirs(out, exist_ok=True)
    graphs = sorted(glob.glob(os.path.join(bundle, "f32", "*.onnx")))
    if not graphs:
        sys.exit(f"{bundle}: no f32 stage graphs to quantize")
    for i, src in enumerate(graphs):
        quantize(src, os.path.join(out, os.path.basename(src)))
        print(f"[{i + 1}/{len(graphs)}] {os.path.basename(src)}", file=sys.stderr)
    for f in sorted(os.listdir(out)):
        rel = f"ort-int8/{f}"
        m["files"][rel] = hashlib.sha256(open(os.path.join(out, f), "rb").read()).hexdigest()
    m.setdefault("quantization", {})["ort-int8"] = {
        "tool": f"onnxruntime {onnxruntime.__version__} quantize_dynamic",
        "weights": "symmetric int8 per output channel",
        "activations": "uint8, range of each run's data (DynamicQuantizeLinear)",
        "source": "f32 stage graphs",
        "engine": "onnxruntime (svit-edge --engine onnxruntime --precision int8)",
    }
    json.dump(m, open(manifest_path, "w"), indent=2)
    print(out)


if len(sys.argv) == 3 and sys.argv[1] == "stages":
    stages(sys.argv[2])
elif len(sys.argv) == 4 and sys.argv[1] == "dense":
    quantize(os.path.join(sys.argv[2], "dense.onnx"), sys.argv[3])
    print(sys.argv[3])
else:
    sys.exit(__doc__)
