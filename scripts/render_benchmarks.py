#!/usr/bin/env python3
"""Renders BENCHMARKS.md from the JSON files scripts/benchmarks.sh writes (argument: that dir)."""
import json, os, platform, subprocess, sys

d = sys.argv[1]
ev = json.load(open(os.path.join(d, "eval.json")))
bench = json.load(open(os.path.join(d, "bench.json")))
dense_trained = os.path.join(d, "dense-trained", "eval.json")
p = print

p("# Benchmarks\n")
p("Produced by `scripts/benchmarks.sh` (do not edit by hand). Machine: "
  f"{bench['cpu']}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}.\n")
p(f"Bundle: `{ev['bundle']}`. Validation: 1000 held-out synthetic scenes (`svit-export data --seed 9000`).\n")

p("## Accuracy as the board runs it (`svit-export eval`)\n")
dt = json.load(open(dense_trained))["runs"][0] if os.path.exists(dense_trained) else None
p("COCO AP@[.5:.95] on the 0-100 scale; threshold 0 is the dense pass of the same bundle. "
  + ("Against the dense-trained model: the model as it was after dense training, before gated "
     f"fine-tuning, exported dense (box AP {dt['box_ap']:.2f}, mask AP {dt['mask_ap']:.2f}), the "
     "model a user would ship without pruning.\n" if dt else "\n"))
vs = lambda r, k: f" {r[k] - dt[k]:+.2f} |" if dt else ""
p("| threshold | box AP | mask AP |" + (" box AP vs dense-trained | mask AP vs dense-trained |" if dt else "")
  + " box AP50 | mask AP50 | kept fraction | GMACs |")
p("|---|---|---|" + ("---|---|" if dt else "") + "---|---|---|---|")
for r in ev["runs"]:
    p(f"| {r['threshold']:.2f} | {r['box_ap']:.2f} | {r['mask_ap']:.2f} |{vs(r, 'box_ap')}{vs(r, 'mask_ap')} {r['box_ap50']:.2f} | "
      f"{r['mask_ap50']:.2f} | {r['kept_fraction']:.3f} | {r['gmacs']:.3f} |")
runs = {round(r["threshold"], 2): r for r in ev["runs"]}
if 0.0 in runs and 0.5 in runs:
    a, b = runs[0.0], runs[0.5]
    p(f"\nAt the default threshold 0.5: box AP {b['box_ap'] - a['box_ap']:+.2f} and mask AP "
      f"{b['mask_ap'] - a['mask_ap']:+.2f} against dense, keeping {b['kept_fraction']:.3f} of the tokens.")
if 0.0 in runs and 0.5 in runs and "per_class" in runs[0.0]:
    p("\nPer class (AP@[.5:.95], all sizes), dense and at threshold 0.5:\n")
    p("| class | box AP dense | mask AP dense | box AP 0.5 | mask AP 0.5 |")
    p("|---|---|---|---|---|")
    for c0, c5 in zip(runs[0.0]["per_class"], runs[0.5]["per_class"]):
        p(f"| {c0['name']} | {c0['box_ap']:.2f} | {c0['mask_ap']:.2f} | {c5['box_ap']:.2f} | {c5['mask_ap']:.2f} |")
if 0.0 in runs and "confusion" in runs[0.0]:
    r = runs[0.0]
    names = [c["name"] for c in r["per_class"]]
    p("\nWhat each ground-truth object is called, dense: the class of the best-scoring detection "
      "whose box overlaps it at IoU >= 0.5 (rows: true class). Class confusion, not localisation, "
      "is where most AP goes:\n")
    p("| true class | " + " | ".join(names) + " | missed | right when found |")
    p("|---|" + "---|" * (len(names) + 2))
    for name, row in zip(names, r["confusion"]):
        found = sum(row[:-1])
        right = 100.0 * row[names.index(name)] / max(found, 1)
        p(f"| {name} | " + " | ".join(str(n) for n in row) + f" | {right:.0f}% |")
p("\nAll 12 COCO summary numbers and the per-class APs of every run above were re-computed with "
  "pycocotools (`scripts/coco_check.py`):\n")
p("```\n" + open(os.path.join(d, "coco_check.txt")).read().strip().splitlines()[-1] + "\n```\n")

tune = os.path.join(d, "tune_threshold.txt")
if os.path.exists(tune):
    p("\n### The default threshold against the dense-trained model (`scripts/tune_threshold.sh`, 500 tuning scenes)\n")
    p("Chosen on scenes of another seed (8000) than the validation scenes above: the most pruning "
      "whose box and mask AP are both within 0.3 of the dense-trained model.\n")
    p("```\n" + open(tune).read().strip() + "\n```\n")

prec = os.path.join(d, "precision")
if os.path.exists(os.path.join(prec, "f32", "eval.json")):
    p("\n### Precision (`svit-export eval --precision`, first 200 scenes)\n")
    p("| precision | threshold | box AP | mask AP | kept |")
    p("|---|---|---|---|---|")
    for name in ["f32", "f16", "int8"]:
        if not os.path.exists(os.path.join(prec, name, "eval.json")):
            continue
        for r in json.load(open(os.path.join(prec, name, "eval.json")))["runs"]:
            p(f"| {name} | {r['threshold']:.1f} | {r['box_ap']:.2f} | {r['mask_ap']:.2f} | {r['kept_fraction']:.3f} |")
    p("")

p("## Engines agree (`scripts/ort_check.py`)\n")
p("```\n" + open(os.path.join(d, "ort_check.txt")).read().strip() + "\n```\n")

p("## Latency, pruned vs dense, f32 vs int8 (`svit-edge bench`, tract)\n")
p("Same 200 frames for every configuration, 20 warm-up frames excluded. Milliseconds. "
  "Model = embed + gates + gather/scatter + blocks + head (no decode, resize or post-processing).\n")
p("| precision | threads | threshold | total p50 | total p95 | model mean | backbone mean | backbone speed-up vs dense | kept | GMACs | gates+gather/scatter |")
p("|---|---|---|---|---|---|---|---|---|---|---|")
model_ms = lambda c: c["backbone_ms"]["mean"] + c["head_ms"]["mean"]
def dense_backbone(configs):
    """Mean backbone time of the dense run, by (precision, threads)."""
    return {(c["precision"], c["threads"]): c["backbone_ms"]["mean"] for c in configs if c["mode"] == "dense"}
dense = dense_backbone(bench["configs"])
for c in bench["configs"]:
    sp = dense[(c["precision"], c["threads"])] / c["backbone_ms"]["mean"]
    p(f"| {c['precision']} | {c['threads']} | {c['threshold']:.2f} | {c['total_ms']['p50']:.2f} | {c['total_ms']['p95']:.2f} | "
      f"{model_ms(c):.2f} | {c['backbone_ms']['mean']:.2f} | {sp:.2f}x | {c['kept_fraction']:.3f} | {c['gmacs']:.3f} | "
      f"{100 * c['overhead_fraction']:.1f}% |")
f32 = {(c["threads"], round(c["threshold"], 2)): c for c in bench["configs"] if c["precision"] == "f32"}
q8 = [c for c in bench["configs"] if c["precision"] == "int8"]
if q8:
    p("\nint8 against f32, same threads and threshold (model time, mean):\n")
    p("| threads | threshold | f32 ms | int8 ms | int8 speed-up |")
    p("|---|---|---|---|---|")
    for c in q8:
        ref = f32.get((c["threads"], round(c["threshold"], 2)))
        if ref:
            p(f"| {c['threads']} | {c['threshold']:.2f} | {model_ms(ref):.2f} | {model_ms(c):.2f} | {model_ms(ref) / model_ms(c):.2f}x |")
one = {(c["precision"], round(c["threshold"], 2)): c for c in bench["configs"] if c["threads"] == 1}
more = [c for c in bench["configs"] if c["threads"] > 1 and (c["precision"], round(c["threshold"], 2)) in one]
if more:
    p("\nMore threads against one, same precision and threshold (model time, mean; each stage's "
      "tokens shared among the threads, `runtime/src/crew.rs`):\n")
    p("| precision | threshold | threads | 1 thread ms | ms | speed-up |")
    p("|---|---|---|---|---|---|")
    for c in more:
        ref = one[(c["precision"], round(c["threshold"], 2))]
        p(f"| {c['precision']} | {c['threshold']:.2f} | {c['threads']} | {model_ms(ref):.2f} | {model_ms(c):.2f} | {model_ms(ref) / model_ms(c):.2f}x |")
def floor(v):
    """A min_keep as the CLI takes it: 96, or 48..128 for a floor rising over the gated blocks
    (bench JSON writes [first, last]; older files a single number for a flat floor)."""
    if not isinstance(v, list):
        return str(v)
    return str(v[0]) if v[0] == v[1] else f"{v[0]}..{v[1]}"


mk96 = os.path.join(d, "min-keep-96", "eval.json")
if os.path.exists(mk96) and 0.5 in runs:
    u = json.load(open(mk96))["runs"][0]
    p(f"\nThe bundle's floor (`min_keep` {floor(bench['configs'][0].get('min_keep'))}) against one floor of "
      "96 tokens in every gated block, threshold 0.5, same 1000 scenes:\n")
    p("| min_keep | box AP | mask AP | box AP vs dense | mask AP vs dense | kept fraction |")
    p("|---|---|---|---|---|---|")
    for name, r in [(floor(bench["configs"][0].get("min_keep")), runs[0.5]), ("96", u)]:
        p(f"| {name} | {r['box_ap']:.2f} | {r['mask_ap']:.2f} | {r['box_ap'] - runs[0.0]['box_ap']:+.2f} | "
          f"{r['mask_ap'] - runs[0.0]['mask_ap']:+.2f} | {r['kept_fraction']:.3f} |")

mk = os.path.join(d, "min-keep-16")
if os.path.exists(os.path.join(mk, "bench.json")):
    mev = json.load(open(os.path.join(mk, "eval.json")))["runs"][0]
    mb = json.load(open(os.path.join(mk, "bench.json")))["configs"]
    dflt = bench["configs"][0].get("min_keep")
    p(f"\nPruning harder: the same bundle at threshold 0.5 with `--min-keep 16` instead of the bundle's "
      f"default ({floor(dflt)}); accuracy on the 1000 scenes (f32), latency from a second `svit-edge bench` "
      "run (1 thread, same frames):\n")
    p(f"Box AP {mev['box_ap']:.2f} ({mev['box_ap'] - runs[0.0]['box_ap']:+.2f} against dense), mask AP "
      f"{mev['mask_ap']:.2f} ({mev['mask_ap'] - runs[0.0]['mask_ap']:+.2f}), kept {mev['kept_fraction']:.3f}.\n")
    p("| precision | threshold | min_keep | model mean | backbone mean | backbone speed-up vs dense | kept |")
    p("|---|---|---|---|---|---|---|")
    mdense = dense_backbone(mb)
    for c in mb:
        sp = mdense[(c["precision"], c["threads"])] / c["backbone_ms"]["mean"]
        p(f"| {c['precision']} | {c['threshold']:.2f} | {floor(c['min_keep'])} | {model_ms(c):.2f} | "
          f"{c['backbone_ms']['mean']:.2f} | {sp:.2f}x | {c['kept_fraction']:.3f} |")
p("\nBlock time against its token count K (1 thread, threshold 0.5, all blocks pooled):\n")
p("| precision | K | blocks timed | ms per block | GMACs per block |")
p("|---|---|---|---|---|")
for c in bench["configs"]:
    if c["threads"] == 1 and abs(c["threshold"] - 0.5) < 1e-6:
        for k in c["block_time_vs_k"]:
            p(f"| {c['precision']} | {k['k']} | {k['frames']} | {k['block_ms']:.3f} | {k['block_gmacs']:.4f} |")

engp = os.path.join(d, "engines.json")
if os.path.exists(engp):
    eb = json.load(open(engp))["configs"]
    p("\n## Engines: tract and onnxruntime, and onnxruntime's whole dense graph (`svit-edge bench --engine tract,onnxruntime`)\n")
    p("One run, same 200 frames for every row, 20 warm-up frames excluded. Every row's total is "
      "resize and normalise + model + decode, so rows compare like with like. `dense-graph`: "
      "onnxruntime running the bundle's `dense.onnx` as one graph (int8: that graph through "
      "onnxruntime's own dynamic quantizer, `scripts/ort_quantize.py dense`), what a user who "
      "skips pruning would run. onnxruntime's int8 stage graphs are its own quantizer's form "
      "(`ort-int8/`). Milliseconds; ratios are total means against the dense graph on the same "
      "threads.\n")
    p("| threads | engine | precision | threshold | mode | total p50 | total p95 | total mean | vs dense graph f32 | vs dense graph int8 | kept |")
    p("|---|---|---|---|---|---|---|---|---|---|---|")
    graph = {(c["threads"], c["precision"]): c["total_ms"]["mean"] for c in eb if c["mode"] == "dense-graph"}
    ratio = lambda c, pr: (f"{graph[(c['threads'], pr)] / c['total_ms']['mean']:.2f}x"
                           if (c["threads"], pr) in graph else "-")
    for c in sorted(eb, key=lambda c: c["threads"]):
        p(f"| {c['threads']} | {c['engine']} | {c['precision']} | {c['threshold']:.2f} | {c['mode']} | "
          f"{c['total_ms']['p50']:.2f} | {c['total_ms']['p95']:.2f} | {c['total_ms']['mean']:.2f} | "
          f"{ratio(c, 'f32')} | {ratio(c, 'int8')} | {c['kept_fraction']:.3f} |")
    p("\nHeadlines, per thread count: the fastest pruned row against the dense graph, and within "
      "each engine the pruned backbone against the dense backbone of the same precision:\n")
    for th in sorted({c["threads"] for c in eb}):
        pruned = [c for c in eb if c["threads"] == th and c["mode"] == "pruned"]
        if not pruned or (th, "f32") not in graph:
            continue
        best = min(pruned, key=lambda c: c["total_ms"]["mean"])
        line = (f"- {th} thread{'s' if th > 1 else ''}: {best['engine']} {best['precision']} pruned is "
                f"{graph[(th, 'f32')] / best['total_ms']['mean']:.2f}x onnxruntime's dense graph in f32")
        if (th, "int8") in graph:
            line += f" and {graph[(th, 'int8')] / best['total_ms']['mean']:.2f}x its int8 dense graph"
        dense_bb = {(c["engine"], c["precision"]): c["backbone_ms"]["mean"] for c in eb
                    if c["threads"] == th and c["mode"] == "dense"}
        within = [f"{c['engine']} {c['precision']} {dense_bb[(c['engine'], c['precision'])] / c['backbone_ms']['mean']:.2f}x"
                  for c in pruned if (c["engine"], c["precision"]) in dense_bb]
        p(line + "; backbone pruned vs dense: " + ", ".join(within) + ".")
    engev = os.path.join(d, "engines")
    if os.path.isdir(engev):
        p("\nAccuracy of each engine's pass (`svit-export eval --engine`, first 200 scenes):\n")
        p("| engine | precision | threshold | box AP | mask AP | kept |")
        p("|---|---|---|---|---|---|")
        for name in sorted(os.listdir(engev)):
            for r in json.load(open(os.path.join(engev, name, "eval.json")))["runs"]:
                p(f"| {r['engine']} | {r['precision']} | {r['threshold']:.2f} | {r['box_ap']:.2f} | "
                  f"{r['mask_ap']:.2f} | {r['kept_fraction']:.3f} |")

budget = os.path.join(d, "budget", "eval.json")
if os.path.exists(budget):
    bev = json.load(open(budget))
    p("\n## What a latency budget costs (`svit-export eval --budget-ms --latency-model bench.json`)\n")
    p("`svit-edge run --budget-ms`'s controller run over the first 200 validation scenes in order, each "
      "frame's total predicted from the bench above (f32, 1 thread: the fixed stages' means and the "
      "block time against kept tokens). Budgets are multiples of the default pruned p50 from that bench; "
      "the controller holds the p95 of the total at 0.9 of the budget, never pruning less than the "
      "bundle's threshold. Hit rate: frames whose predicted total held the budget. The first row is the "
      "bundle's threshold without a budget.\n")
    p("| budget ms | x default p50 | hit rate | predicted p95 ms | mean threshold | box AP | mask AP | kept fraction |")
    p("|---|---|---|---|---|---|---|---|")
    p50 = bev.get("default_p50_ms")
    for r in bev["runs"]:
        if r.get("budget_ms") is None:
            if abs(r["threshold"] - 0.5) < 1e-6:
                p(f"| - | - | - | - | {r['threshold']:.2f} | {r['box_ap']:.2f} | {r['mask_ap']:.2f} | {r['kept_fraction']:.3f} |")
            continue
        x = f"{r['budget_ms'] / p50:.2f}x" if p50 else "-"
        p(f"| {r['budget_ms']:.1f} | {x} | {100 * r['budget_hit_rate']:.0f}% | {r['predicted_p95_ms']:.2f} | "
          f"{r['threshold']:.2f} | {r['box_ap']:.2f} | {r['mask_ap']:.2f} | {r['kept_fraction']:.3f} |")

pipe = os.path.join(d, "pipeline", "summary.json")
if os.path.exists(pipe):
    ps = json.load(open(pipe))
    p("\n## The whole pipeline (`svit-host demo`, 30 s, cameras paced at 10 fps)\n")
    p("Inference = embed + gates + gather/scatter + blocks + head. Outside inference = decode + "
      "preprocess + postprocess + encode, per frame, as a share of that frame's inference. "
      "Capture-to-host = the host's receive time minus the edge's capture time (same machine, same clock). "
      "Milliseconds, p50.\n")
    p("| board | frames | inference | outside inference / inference | capture -> host | capture -> host / inference |")
    p("|---|---|---|---|---|---|")
    for b in ps["boards"]:
        inf = b["inference_ms"]["p50"]
        c2h = b["capture_to_recv_ms"]["p50"]
        p(f"| {b['device']} | {b['frames']} | {inf:.2f} | {100 * b['outside_inference_fraction']:.1f}% | "
          f"{c2h:.2f} | {c2h / inf:.2f} |")

load = os.path.join(d, "host_load.json")
if os.path.exists(load):
    l = json.load(open(load))
    p("\n## Host under load (`scripts/host_load.sh`)\n")
    p(f"{l['boards']} simulated boards (`svit-loadgen`, real TCP and protocol) at {l['fps_per_board']} frames/s each "
      f"for {l['seconds']} s, thumbnails off, recording on: {l['frames_sent']} frames sent, "
      f"{l['frames_recorded']} recorded, {l['missing']} missing; the host used {l['host_cpu_cores']:.3f} CPU cores.")
push = os.path.join(d, "push.json")
if os.path.exists(push):
    u = json.load(open(push))
    p("\n## Pushing a bundle to a running board (`scripts/push_bench.sh`)\n")
    p(f"`svit-host push` of the {u['bundle']} bundle ({u['bytes'] / 1e6:.1f} MB) through the host's HTTP API and the "
      f"link to one `svit-edge run --store` on loopback (synthetic camera at 10 frames/s, one thread): "
      f"{u['push_seconds']:.2f} s from the request to the board's \"switched\" (transfer, hashes, signature check, "
      f"load into a second model, one test frame, the switch). Frames around the switch (frame {u['switch_seq']}), "
      f"capture to capture: {u['gap_at_switch_ms']:.1f} ms at the switch, at most {u['gap_max_around_switch_ms']:.1f} ms "
      f"in the five frames either side, against a median of {u['gap_median_ms']:.1f} ms; {u['missing_seqs']} frame "
      f"numbers missing from the recording. Over a 921600-baud serial line the same bytes need at least "
      f"{u['serial_921600_seconds_at_least']:.0f} s of line time (arithmetic, not measured: the tests' pseudo-terminals "
      f"have no baud rate), shared with the frames.")
mq = os.path.join(d, "mqtt_load.json")
if os.path.exists(mq):
    runs = json.load(open(mq))
    p("\n## Boards through MQTT (`scripts/mqtt_load.sh`)\n")
    p("Simulated boards (`svit-loadgen` MQTT mode: hello retained, each frame one QoS 1 publish) -> a local "
      "Mosquitto -> one `svit-host listen --mqtt-subscribe` that records; the load doubles until frames go missing "
      "(same machine for all three, so the CPU figures share it).\n")
    p("| boards x fps | seconds | frames sent | recorded | missing | host CPU cores | broker CPU cores |")
    p("|---|---|---|---|---|---|---|")
    for r in runs:
        p(f"| {r['boards']} x {r['fps_per_board']} | {r['seconds']} | {r['frames_sent']} | {r['frames_recorded']} | "
          f"{r['missing']} | {r['host_cpu_cores']:.3f} | {r['broker_cpu_cores']:.3f} |")
    held = [r for r in runs if r['missing'] == 0 and r['frames_recorded'] == r['frames_sent']]
    if held:
        b = max(held, key=lambda r: r['boards'])
        last = "" if len(held) == len(runs) else f"; at {runs[-1]['boards']} x {runs[-1]['fps_per_board']} frames went missing"
        p(f"\nThe most held without loss: {b['boards']} boards x {b['fps_per_board']} frames/s{last}.")
web = os.path.join(d, "web_load.json")
if os.path.exists(web):
    w = json.load(open(web))
    p("\n## Web view under load (`scripts/web_load.sh`)\n")
    p(f"The same {w['boards']} boards x {w['fps_per_board']} frames/s for {w['seconds']} s into a host with "
      f"`--http`, the live page open in headless Chromium and `/metrics` scraped every second: "
      f"{w['frames_sent']} frames sent, {w['frames_recorded']} recorded, {w['missing']} missing; the host used "
      f"{w['host_cpu_cores']:.3f} CPU cores (baseline: the run above, without the web view). The page drew "
      f"{w['page_updates']} updates (10 per board per second at most); capture on the board to drawn "
      f"on the page, loopback and one clock: p50 {w['capture_to_page_p50_ms']} ms, p90 "
      f"{w['capture_to_page_p90_ms']} ms.")
seal = os.path.join(d, "seal_cost.json")
if os.path.exists(seal):
    s = json.load(open(seal))
    p("\n## What `--key` costs per message (`tests/examples/seal_cost.rs`)\n")
    p(f"Baseline: the same message without a key (postcard + COBS). With a key each is sealed with "
      f"`{s['noise']}` (ChaCha20-Poly1305, `snow`) and opened on the host; microseconds per message, "
      f"this machine, one thread.\n")
    p("| message | bytes plain / sealed | encode plain | seal | decode plain | open |")
    p("|---|---|---|---|---|---|")
    for m in s["messages"]:
        p(f"| {m['message']} | {m['plain_bytes']} / {m['sealed_bytes']} | {m['encode_plain_us']:.1f} | "
          f"{m['seal_us']:.1f} | {m['decode_plain_us']:.1f} | {m['open_us']:.1f} |")
    f32 = [c for c in bench["configs"] if c["precision"] == "f32" and c["threads"] == 1 and c["mode"] == "pruned"]
    if f32:
        fr = s["messages"][0]
        total = f32[0]["total_ms"]["p50"] * 1000
        later = os.path.getmtime(seal) - os.path.getmtime(os.path.join(d, "bench.json")) > 3600
        p(f"\nSealing a frame adds {fr['seal_us'] - fr['encode_plain_us']:.1f} us on the board, "
          f"{100 * (fr['seal_us'] - fr['encode_plain_us']) / total:.2f}% of the pruned f32 frame's p50 total "
          f"({total / 1000:.2f} ms, `svit-edge bench` above"
          + (", measured in an earlier run than this table)." if later else ")."))
soak = os.path.join(d, "soak.json")
if os.path.exists(soak):
    k = json.load(open(soak))
    x = k["proxy"]
    p(f"\n## The keyed link under faults (`scripts/soak.sh {k['seconds'] // 60}`)\n")
    p(f"One `svit-host --key` recording, four `svit-edge --key` boards (synthetic camera, 5 frames/s, one "
      f"thread) through `svit-faultproxy` for {k['seconds'] // 60} minutes: {x['connections']} connections, "
      f"{x['flips']} bits flipped, {x['stalls']} stalls of 2 s, {x['drops']} dropped and {x['half_open']} "
      f"half-open connections, 5 ms added latency and a 2 MB/s cap; the host killed and restarted "
      f"{k['host_restarts']} times (SIGKILL and SIGTERM in turn). Every recorded frame is compared with a clean "
      f"run of the same camera and model.\n")
    p("| frames sent | recorded | lost (sequence gaps) | duplicated | altered recorded | integrity failures caught | reconnects | reconnect p50 / p99 ms |")
    p("|---|---|---|---|---|---|---|---|")
    p(f"| {k['sent']} | {k['recorded']} | {k['lost']} | {k['duplicated']} | {k['altered']} | "
      f"{k['integrity_failures_caught']} | {k['reconnects']} | {k['reconnect_ms_p50']} / {k['reconnect_ms_p99']} |")
    p("\n| process | resident MB start / end | open files start / end |")
    p("|---|---|---|")
    for who, a in k["memory_start"].items():
        b = k["memory_end"].get(who, a)
        p(f"| {who} | {a['rss_mb']} / {b['rss_mb']} | {a['fds']} / {b['fds']} |")
    p("\n(The host's figures are of the instance running at the start and of the one running at the end.)")
