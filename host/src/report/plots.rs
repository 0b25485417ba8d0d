//! Report plots as plain SVG (no plotting dependency) and the index.html that shows them with
//! the summary table. Every point comes from the recorded frames and health messages.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use svit_protocol::{EdgeMsg, Frame};

use super::summary::{backbone_ms, kept_fraction, stage_us, total_ms, Summary, STAGES};
use crate::record::Record;

const W: f64 = 560.0;
const H: f64 = 300.0;
const PAD: f64 = 48.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// A chart with linear axes from `x` and `y` ranges.
struct Chart {
    svg: String,
    x: (f64, f64),
    y: (f64, f64),
}

impl Chart {
    fn new(title: &str, xlabel: &str, ylabel: &str, x: (f64, f64), y: (f64, f64)) -> Self {
        Self::with_x_labels(title, xlabel, ylabel, x, y, None)
    }

    /// `cats`: names for the integer x positions 0, 1, ... instead of numeric ticks.
    fn with_x_labels(
        title: &str,
        xlabel: &str,
        ylabel: &str,
        x: (f64, f64),
        y: (f64, f64),
        cats: Option<&[&str]>,
    ) -> Self {
        let fix = |(a, b): (f64, f64)| if b > a { (a, b) } else { (a, a + 1.0) };
        let (x, y) = (fix(x), fix(y));
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="16" text-anchor="middle" font-size="13">{}</text>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="12" y="{}" text-anchor="middle" transform="rotate(-90 12 {})">{}</text>
<line x1="{PAD}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{}" stroke="black"/>
"#,
            W / 2.0,
            esc(title),
            W / 2.0,
            H - 6.0,
            esc(xlabel),
            H / 2.0,
            H / 2.0,
            esc(ylabel),
            H - PAD,
            W - 10.0,
            H - PAD,
            H - PAD,
        );
        let px = |v: f64| PAD + (v - x.0) / (x.1 - x.0) * (W - PAD - 10.0);
        for i in 0..=4 {
            let fy = y.0 + (y.1 - y.0) * i as f64 / 4.0;
            let py = H - PAD - (H - 2.0 * PAD) * i as f64 / 4.0;
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                PAD - 4.0,
                py + 4.0,
                tick(fy)
            );
            if cats.is_none() {
                let fx = x.0 + (x.1 - x.0) * i as f64 / 4.0;
                let _ = writeln!(
                    svg,
                    r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                    px(fx),
                    H - PAD + 14.0,
                    tick(fx)
                );
            }
        }
        for (i, c) in cats.unwrap_or(&[]).iter().enumerate() {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle" font-size="10">{}</text>"#,
                px(i as f64),
                H - PAD + 14.0,
                esc(c)
            );
        }
        Chart { svg, x, y }
    }

    fn px(&self, x: f64) -> f64 {
        PAD + (x - self.x.0) / (self.x.1 - self.x.0) * (W - PAD - 10.0)
    }
    fn py(&self, y: f64) -> f64 {
        H - PAD - (y - self.y.0) / (self.y.1 - self.y.0) * (H - 2.0 * PAD)
    }

    fn line(&mut self, pts: &[(f64, f64)], colour: &str) {
        let d: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect();
        let _ = writeln!(
            self.svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            d.join(" ")
        );
    }

    fn points(&mut self, pts: &[(f64, f64)], colour: &str) {
        for &(x, y) in pts {
            let _ = writeln!(
                self.svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{colour}" fill-opacity="0.6"/>"#,
                self.px(x),
                self.py(y)
            );
        }
    }

    /// Bars of width `w` (in x units) from 0 to each y.
    fn bars(&mut self, pts: &[(f64, f64)], w: f64, colour: &str) {
        for &(x, y) in pts {
            let (x0, x1) = (self.px(x - w / 2.0), self.px(x + w / 2.0));
            let (y0, y1) = (self.py(y), self.py(self.y.0));
            let _ = writeln!(
                self.svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}" fill-opacity="0.7"/>"#,
                x0,
                y0,
                (x1 - x0).max(1.0),
                (y1 - y0).max(0.0)
            );
        }
    }

    /// One group of bars per integer x, one bar per series, side by side.
    fn grouped_bars(&mut self, series: &[Vec<(f64, f64)>]) {
        let n = series.len().max(1) as f64;
        for (i, s) in series.iter().enumerate() {
            let shifted: Vec<(f64, f64)> = s
                .iter()
                .map(|&(x, y)| (x - 0.4 + (i as f64 + 0.5) * 0.8 / n, y))
                .collect();
            self.bars(&shifted, 0.8 / n, COLOURS[i % COLOURS.len()]);
        }
    }

    fn legend(&mut self, names: &[String]) {
        for (i, n) in names.iter().enumerate() {
            let y = PAD + 4.0 + 14.0 * i as f64;
            let _ = writeln!(
                self.svg,
                r#"<rect x="{}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
                W - 170.0,
                y - 9.0,
                COLOURS[i % COLOURS.len()],
                W - 155.0,
                y,
                esc(n)
            );
        }
    }

    fn finish(mut self) -> String {
        self.svg.push_str("</svg>\n");
        self.svg
    }
}

fn tick(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn max_of(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(0.0, f64::max)
}

/// Writes the SVG plots and index.html into `out`; returns the plot file names.
pub fn write(records: &[Record], summary: &Summary, out: &Path) -> Result<Vec<String>> {
    let mut frames: BTreeMap<&str, Vec<(&Record, &Frame)>> = BTreeMap::new();
    let mut temps: BTreeMap<&str, Vec<(u64, f64)>> = BTreeMap::new();
    let t0 = records.iter().map(|r| r.recv_us).min().unwrap_or(0);
    for r in records {
        match &r.msg {
            EdgeMsg::Frame(f) => frames.entry(&r.device).or_default().push((r, f)),
            EdgeMsg::Health(h) => {
                if let Some(t) = h.cpu_temp_c {
                    temps
                        .entry(&r.device)
                        .or_default()
                        .push((r.recv_us, t as f64));
                }
            }
            _ => {}
        }
    }
    let names: Vec<String> = frames.keys().map(|s| s.to_string()).collect();
    let mut files = Vec::new();
    let mut save = |name: &str, svg: String| -> Result<()> {
        let p = out.join(name);
        std::fs::write(&p, svg).with_context(|| format!("writing {}", p.display()))?;
        files.push(name.to_string());
        Ok(())
    };

    // Latency histogram of the whole per-frame pipeline, one series per board.
    let totals: Vec<Vec<f64>> = frames
        .values()
        .map(|v| v.iter().map(|(_, f)| total_ms(f)).collect())
        .collect();
    let hi = max_of(totals.iter().flatten().copied()) * 1.05;
    let bins = 30usize;
    let bw = hi.max(1e-3) / bins as f64;
    let hists: Vec<Vec<(f64, f64)>> = totals
        .iter()
        .map(|v| {
            let mut c = vec![0usize; bins];
            for &x in v {
                c[((x / bw) as usize).min(bins - 1)] += 1;
            }
            c.iter()
                .enumerate()
                .map(|(i, &n)| ((i as f64 + 0.5) * bw, n as f64))
                .collect()
        })
        .collect();
    let ymax = max_of(hists.iter().flatten().map(|p| p.1));
    let mut c = Chart::new(
        "Per-frame latency",
        "ms",
        "frames",
        (0.0, hi),
        (0.0, ymax * 1.1),
    );
    for (i, h) in hists.iter().enumerate() {
        c.bars(
            h,
            bw * 0.9 / names.len().max(1) as f64,
            COLOURS[i % COLOURS.len()],
        );
    }
    c.legend(&names);
    save("latency_hist.svg", c.finish())?;

    // Per-stage latency: p50 bars per stage, per board.
    let stages = STAGES;
    let mut series = Vec::new();
    for v in frames.values() {
        let per: Vec<(f64, f64)> = (0..stages.len())
            .map(|s| {
                let mut xs: Vec<f64> = v
                    .iter()
                    .map(|(_, f)| stage_us(f)[s] as f64 / 1000.0)
                    .collect();
                xs.sort_by(f64::total_cmp);
                (s as f64, xs.get(xs.len() / 2).copied().unwrap_or(0.0))
            })
            .collect();
        series.push(per);
    }
    let ymax = max_of(series.iter().flatten().map(|p| p.1));
    let short = [
        "capture",
        "pre",
        "embed",
        "gates",
        "gath/scat",
        "blocks",
        "head",
        "post",
    ];
    let mut c = Chart::with_x_labels(
        "Median latency per stage",
        "stage",
        "ms",
        (-0.5, stages.len() as f64 - 0.5),
        (0.0, ymax.max(1e-3) * 1.1),
        Some(&short),
    );
    c.grouped_bars(&series);
    c.legend(&names);
    save("stages.svg", c.finish())?;

    let tokens_of = |dev: &str| {
        summary
            .boards
            .iter()
            .find(|b| b.device == dev)
            .map_or(1, |b| b.tokens)
    };

    // Backbone latency against kept tokens: pruning pays off when this rises with K.
    let pts: Vec<Vec<(f64, f64)>> = frames
        .iter()
        .map(|(dev, v)| {
            let tokens = tokens_of(dev);
            v.iter()
                .map(|(_, f)| (kept_fraction(f, tokens), backbone_ms(f)))
                .collect()
        })
        .collect();
    let ymax = max_of(pts.iter().flatten().map(|p| p.1));
    let mut c = Chart::new(
        "Backbone latency against kept tokens",
        "kept fraction",
        "backbone ms",
        (0.0, 1.0),
        (0.0, ymax * 1.1),
    );
    for (i, p) in pts.iter().enumerate() {
        c.points(p, COLOURS[i % COLOURS.len()]);
    }
    c.legend(&names);
    save("latency_vs_kept.svg", c.finish())?;

    // Frames per second over time (per second of receive time) and temperature.
    let fps: Vec<Vec<(f64, f64)>> = frames
        .values()
        .map(|v| {
            let mut per_s: BTreeMap<u64, usize> = BTreeMap::new();
            for (r, _) in v {
                *per_s.entry((r.recv_us - t0) / 1_000_000).or_default() += 1;
            }
            per_s
                .into_iter()
                .map(|(s, n)| (s as f64, n as f64))
                .collect()
        })
        .collect();
    let xmax = max_of(fps.iter().flatten().map(|p| p.0)) + 1.0;
    let ymax = max_of(fps.iter().flatten().map(|p| p.1));
    let mut c = Chart::new(
        "Frames per second",
        "s",
        "fps",
        (0.0, xmax),
        (0.0, ymax * 1.1),
    );
    for (i, p) in fps.iter().enumerate() {
        c.line(p, COLOURS[i % COLOURS.len()]);
    }
    c.legend(&names);
    save("fps.svg", c.finish())?;
    if !temps.is_empty() {
        let tp: Vec<(String, Vec<(f64, f64)>)> = temps
            .iter()
            .map(|(d, v)| {
                (
                    d.to_string(),
                    v.iter().map(|&(t, c)| ((t - t0) as f64 / 1e6, c)).collect(),
                )
            })
            .collect();
        let ymax = max_of(tp.iter().flat_map(|p| p.1.iter().map(|q| q.1)));
        let xmax = max_of(tp.iter().flat_map(|p| p.1.iter().map(|q| q.0)));
        let mut c = Chart::new("CPU temperature", "s", "°C", (0.0, xmax), (0.0, ymax * 1.1));
        for (i, (_, p)) in tp.iter().enumerate() {
            c.line(p, COLOURS[i % COLOURS.len()]);
        }
        c.legend(&tp.iter().map(|p| p.0.clone()).collect::<Vec<_>>());
        save("temperature.svg", c.finish())?;
    }

    // Steering under a latency budget: each frame's threshold and its total over the budget
    // (1 = at the budget), for the boards that ran with one.
    type Series = Vec<(f64, f64)>;
    let steered: Vec<(String, Series, Series)> = frames
        .iter()
        .filter(|(_, v)| v.iter().any(|(_, f)| f.budget_ms.is_some()))
        .map(|(d, v)| {
            let at = |r: &Record| (r.recv_us - t0) as f64 / 1e6;
            let thr = v.iter().map(|(r, f)| (at(r), f.threshold as f64)).collect();
            let load = v
                .iter()
                .filter_map(|(r, f)| Some((at(r), total_ms(f) / f.budget_ms? as f64)))
                .collect();
            (d.to_string(), thr, load)
        })
        .collect();
    if !steered.is_empty() {
        let xmax = max_of(steered.iter().flat_map(|s| s.1.iter().map(|p| p.0))).max(1.0);
        let ymax = max_of(steered.iter().flat_map(|s| s.2.iter().map(|p| p.1))).max(1.2);
        let mut c = Chart::new(
            "Steering to the latency budget: threshold, and total / budget",
            "s",
            "threshold; total / budget",
            (0.0, xmax),
            (0.0, ymax * 1.05),
        );
        let mut legend = Vec::new();
        for (i, (d, thr, load)) in steered.iter().enumerate() {
            c.line(thr, COLOURS[(2 * i) % COLOURS.len()]);
            c.line(load, COLOURS[(2 * i + 1) % COLOURS.len()]);
            legend.push(format!("{d} threshold"));
            legend.push(format!("{d} total / budget"));
        }
        // The legend colours series by position.
        c.line(
            &[(0.0, 1.0), (xmax, 1.0)],
            COLOURS[legend.len() % COLOURS.len()],
        );
        legend.push("the budget".into());
        c.legend(&legend);
        save("budget.svg", c.finish())?;
    }

    // Kept fraction per block.
    let per_block: Vec<Vec<(f64, f64)>> = frames
        .iter()
        .map(|(dev, v)| {
            let tokens = tokens_of(dev) as f64;
            let blocks = v.first().map_or(0, |(_, f)| f.kept.len());
            (0..blocks)
                .map(|b| {
                    let m = v
                        .iter()
                        .map(|(_, f)| f.kept.get(b).copied().unwrap_or(0) as f64)
                        .sum::<f64>()
                        / v.len().max(1) as f64;
                    (b as f64, m / tokens.max(1.0))
                })
                .collect()
        })
        .collect();
    let blocks = per_block.iter().map(Vec::len).max().unwrap_or(1) as f64;
    let block_names: Vec<String> = (0..blocks as usize).map(|b| b.to_string()).collect();
    let block_refs: Vec<&str> = block_names.iter().map(String::as_str).collect();
    let mut c = Chart::with_x_labels(
        "Mean kept fraction per block",
        "block",
        "kept fraction",
        (-0.5, blocks - 0.5),
        (0.0, 1.05),
        Some(&block_refs),
    );
    c.grouped_bars(&per_block);
    c.legend(&names);
    save("kept_per_block.svg", c.finish())?;

    let mut html = String::from(
        "<!doctype html><meta charset=\"utf-8\"><title>svit-host report</title>\n\
         <style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}\
         th{background:#eee}img{margin:4px;border:1px solid #ddd}</style>\n\
         <h1>svit-host report</h1>\n<table><tr><th>board</th><th>bundle</th><th>frames</th>\
         <th>missing</th><th>dropped on board</th><th>fps</th><th>total p50 ms</th><th>p95</th>\
         <th>p99</th><th>inference p50</th><th>capture&rarr;host p50</th><th>kept</th><th>GMACs</th></tr>\n",
    );
    for b in &summary.boards {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2}</td>\
             <td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            esc(&b.device),
            esc(&b.bundle),
            b.frames,
            b.missing,
            b.dropped_on_board,
            b.fps,
            b.total_ms.p50,
            b.total_ms.p95,
            b.total_ms.p99,
            b.inference_ms.p50,
            b.capture_to_recv_ms.p50,
            b.kept_fraction,
            b.gmacs
        );
    }
    html.push_str("</table>\n");
    for b in &summary.bench {
        let _ = writeln!(
            html,
            "<h2>bench from {} (bundle {}, {})</h2>\n<table><tr><th>engine</th><th>precision</th>\
             <th>threads</th><th>threshold</th><th>mode</th><th>total p50 ms</th><th>p95</th>\
             <th>p99</th><th>backbone mean ms</th><th>kept</th><th>GMACs</th><th>overhead</th></tr>",
            esc(&b.device),
            esc(&b.report.bundle),
            esc(&b.report.cpu)
        );
        for c in &b.report.configs {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{:.2}</td>\
                 <td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.3}</td><td>{:.3}</td><td>{:.1}%</td></tr>",
                esc(&c.engine),
                esc(&c.precision),
                c.threads,
                c.threshold,
                esc(&c.mode),
                c.total_ms.p50,
                c.total_ms.p95,
                c.total_ms.p99,
                c.backbone_ms.mean,
                c.kept_fraction,
                c.gmacs,
                100.0 * c.overhead_fraction
            );
        }
        html.push_str("</table>\n");
    }
    html.push_str("<p>Data: <a href=\"summary.json\">summary.json</a>, <a href=\"frames.csv\">frames.csv</a></p>\n");
    for f in &files {
        let _ = writeln!(html, "<img src=\"{f}\" alt=\"{f}\">");
    }
    let p = out.join("index.html");
    std::fs::write(&p, html).with_context(|| format!("writing {}", p.display()))?;
    Ok(files)
}
