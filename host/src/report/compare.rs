//! `svit-host compare A B`: two recordings side by side, ratios B/A (dense vs pruned, two
//! boards, two precisions).

use anyhow::Result;

use super::{summarize, BoardSummary};

pub fn compare(a: &std::path::Path, b: &std::path::Path, json: bool) -> Result<()> {
    let sa = summarize(&crate::record::read(a)?.records);
    let sb = summarize(&crate::record::read(b)?.records);
    let pairs: Vec<(&BoardSummary, &BoardSummary)> =
        if let ([x], [y]) = (&sa.boards[..], &sb.boards[..]) {
            vec![(x, y)]
        } else {
            sa.boards
                .iter()
                .filter_map(|x| {
                    sb.boards
                        .iter()
                        .find(|y| y.device == x.device)
                        .map(|y| (x, y))
                })
                .collect()
        };
    anyhow::ensure!(
        !pairs.is_empty(),
        "no board in {} matches one in {} by name (and they do not hold one board each)",
        a.display(),
        b.display()
    );
    let figures = |s: &BoardSummary| {
        [
            ("fps", s.fps),
            ("total p50 ms", s.total_ms.p50),
            ("total p95 ms", s.total_ms.p95),
            ("total p99 ms", s.total_ms.p99),
            ("inference p50 ms", s.inference_ms.p50),
            ("backbone p50 ms", s.backbone_ms.p50),
            ("capture->host p50 ms", s.capture_to_recv_ms.p50),
            ("kept fraction", s.kept_fraction),
            ("GMACs", s.gmacs),
            ("detections/frame", s.detections_per_frame),
        ]
    };
    let ratio = |x: f64, y: f64| if x != 0.0 { y / x } else { f64::NAN };
    if json {
        let v: Vec<serde_json::Value> = pairs
            .iter()
            .map(|(x, y)| {
                let rows: serde_json::Map<String, serde_json::Value> = figures(x)
                    .iter()
                    .zip(figures(y))
                    .map(|((k, va), (_, vb))| {
                        (
                            k.to_string(),
                            serde_json::json!({"a": va, "b": vb, "b_over_a": ratio(*va, vb)}),
                        )
                    })
                    .collect();
                serde_json::json!({"a": x.device, "b": y.device, "figures": rows})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (x, y) in pairs {
        println!(
            "A = {} ({}, {} frames)   B = {} ({}, {} frames)",
            x.device,
            a.display(),
            x.frames,
            y.device,
            b.display(),
            y.frames
        );
        println!("{:<22} {:>10} {:>10} {:>8}", "", "A", "B", "B/A");
        for ((k, va), (_, vb)) in figures(x).iter().zip(figures(y)) {
            println!("{k:<22} {va:>10.3} {vb:>10.3} {:>8.2}", ratio(*va, vb));
        }
        println!();
    }
    Ok(())
}
