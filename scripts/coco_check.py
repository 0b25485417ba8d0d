#!/usr/bin/env python3
"""Checks svit-export's COCO evaluator against pycocotools, the reference implementation.

Two modes:
  coco_check.py perturb --coco GT.json --bin target/debug/svit-export
      makes results from the ground truth (jittered boxes, shifted masks, false positives,
      misses; fixed seed), scores them with `svit-export score` and with COCOeval, compares.
  coco_check.py eval --coco GT.json --eval-json out/eval.json
      re-scores the results files that `svit-export eval` wrote and compares with its JSON.
Exits 1 if any of the 12 summary numbers or the per-category APs differs by more than 1e-6
(0-100 scale: 1e-4).
"""
import argparse, contextlib, io, json, os, subprocess, sys, tempfile

import numpy as np
from pycocotools import mask as maskUtils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

KEYS = ["ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
        "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large"]


def reference(gt_path, res_path, iou_type, images=None):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        dt = gt.loadRes(res_path)
        e = COCOeval(gt, dt, iou_type)
        if images is not None:
            # `eval --limit N` scores the N images with the lowest ids.
            e.params.imgIds = sorted(gt.getImgIds())[:images]
        e.evaluate(); e.accumulate(); e.summarize()
    stats = [s * 100 if s >= 0 else -1.0 for s in e.stats]
    # AP@[.5:.95] per category (area all, 100 detections), as summarize() averages it.
    per_cat = []
    for k in range(len(e.params.catIds)):
        p = e.eval["precision"][:, :, k, 0, 2]
        p = p[p > -1]
        per_cat.append(float(p.mean()) * 100 if p.size else -1.0)
    return stats, per_cat


def compare(name, ours, ref):
    stats, per_cat = ref
    rows = [(k, ours[k], r) for k, r in zip(KEYS, stats)]
    bad = 0
    if len(ours["per_category"]) != len(per_cat):
        print(f"{name:>14} per-category: {len(ours['per_category'])} values, "
              f"pycocotools has {len(per_cat)}  <-- MISMATCH")
        bad += 1
    else:
        rows += [(f"cat {i}", o, r) for i, (o, r) in enumerate(zip(ours["per_category"], per_cat))]
    for k, o, r in rows:
        flag = "" if abs(o - r) <= 1e-4 else "  <-- MISMATCH"
        bad += bool(flag)
        print(f"{name:>14} {k:>10}: ours {o:9.4f}  pycocotools {r:9.4f}{flag}")
    return bad


def perturb(args):
    rng = np.random.default_rng(7)
    gt = json.load(open(args.coco))
    imgs = {i["id"]: i for i in gt["images"]}
    cats = [c["id"] for c in gt["categories"]]
    bbox_res, segm_res = [], []
    for a in gt["annotations"]:
        if rng.random() < 0.1:
            continue  # a miss
        im = imgs[a["image_id"]]
        x, y, w, h = a["bbox"]
        j = rng.normal(0, 0.08, 4) * [w, h, w, h]
        box = [float(x + j[0]), float(y + j[1]), float(max(1, w + j[2])), float(max(1, h + j[3]))]
        score = float(rng.random())
        cat = a["category_id"] if rng.random() > 0.05 else int(rng.choice(cats))
        bbox_res.append({"image_id": a["image_id"], "category_id": cat, "bbox": box, "score": score})
        m = maskUtils.decode(maskUtils.frPyObjects(a["segmentation"], im["height"], im["width"])
                             if isinstance(a["segmentation"], list) else
                             {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()})
        m = np.roll(m, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
        rle = maskUtils.encode(np.asfortranarray(m.astype(np.uint8)))
        segm_res.append({"image_id": a["image_id"], "category_id": cat, "score": score,
                         "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    for im in gt["images"][::3]:  # false positives
        w, h = im["width"], im["height"]
        bw, bh = rng.uniform(5, w / 2), rng.uniform(5, h / 2)
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        s = float(rng.random())
        cat = int(rng.choice(cats))
        bbox_res.append({"image_id": im["id"], "category_id": cat, "bbox": [x, y, bw, bh], "score": s})
        m = np.zeros((h, w), np.uint8)
        m[int(y):int(y + bh), int(x):int(x + bw)] = 1
        rle = maskUtils.encode(np.asfortranarray(m))
        segm_res.append({"image_id": im["id"], "category_id": cat, "score": s,
                         "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        for kind, res in [("bbox", bbox_res), ("segm", segm_res)]:
            p = os.path.join(d, f"{kind}.json")
            json.dump(res, open(p, "w"))
            out = subprocess.run([args.bin, "score", "--coco", args.coco, "--results", p, "--iou-type", kind],
                                 check=True, capture_output=True, text=True).stdout
            bad += compare(kind, json.loads(out), reference(args.coco, p, kind))
    return bad


def check_eval(args):
    doc = json.load(open(args.eval_json))
    bad = 0
    for run in doc["runs"]:
        for kind, key in [("bbox", "box_summary"), ("segm", "mask_summary")]:
            path = run["results_bbox" if kind == "bbox" else "results_segm"]
            if not json.load(open(path)):
                print(f"threshold {run['threshold']}: {kind} results are empty, skipped")
                continue
            ref = reference(args.coco, path, kind, run["images"])
            bad += compare(f"t={run['threshold']} {kind}", run[key], ref)
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["perturb", "eval"])
    ap.add_argument("--coco", required=True)
    ap.add_argument("--bin", default="target/debug/svit-export")
    ap.add_argument("--eval-json")
    args = ap.parse_args()
    bad = perturb(args) if args.mode == "perturb" else check_eval(args)
    print("coco_check: all numbers match pycocotools" if not bad else f"coco_check: {bad} numbers differ")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
