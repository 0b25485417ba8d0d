//! The same pruned pass on both engines: onnxruntime running the bundle's stage graphs computes
//! what tract does (same tokens kept, same head outputs within kernel rounding), f32 and int8,
//! on one thread and on two; and onnxruntime's own int8 form (`ort-int8/`) is what it runs for
//! int8 when the bundle has it. Needs onnxruntime's library (`pip install onnxruntime`); without
//! it the tests say so and pass, unless `SVIT_REQUIRE_ONNXRUNTIME=1` (CI sets it).

use std::path::{Path, PathBuf};

use svit_runtime::{Engine, Model, Pruning, RunOptions};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo")
}

/// Whether onnxruntime can be loaded here; panics when it must.
fn have_onnxruntime() -> bool {
    match svit_runtime::model::onnxruntime_library() {
        Ok(_) => true,
        Err(e) if std::env::var_os("SVIT_REQUIRE_ONNXRUNTIME").is_some() => {
            panic!("SVIT_REQUIRE_ONNXRUNTIME is set: {e}")
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}

/// A test image: smooth bands with edges, in the normalised range.
fn input(s: usize, seed: usize) -> Vec<f32> {
    (0..3 * s * s)
        .map(|i| {
            let (c, y, x) = (i / (s * s), (i / s) % s, i % s);
            let f = 0.05 + 0.03 * seed as f32;
            ((x as f32 * f + c as f32).sin() + (y as f32 * 0.07 * f * 10.0).cos()) * 0.9
                + if ((x + 8 * seed) / 32 + y / 32) % 2 == 0 {
                    0.5
                } else {
                    -0.5
                }
        })
        .collect()
}

/// The demo bundle without onnxruntime's int8 form, so that both engines run `int8/`.
fn without_ort_int8() -> svit_e2e::TempDir {
    svit_e2e::copy_bundle(&demo(), "bundle-without-ort-int8", |rel| {
        !rel.starts_with("ort-int8/")
    })
}

#[test]
fn onnxruntime_runs_the_stage_graphs_as_tract_does() {
    if !have_onnxruntime() {
        return;
    }
    let plain = without_ort_int8();
    for precision in ["f32", "int8"] {
        let tract = Model::load_with(&plain, precision, Engine::Tract).unwrap();
        let ort = Model::load_with(&plain, precision, Engine::OnnxRuntime).unwrap();
        assert_eq!(
            (ort.engine, ort.graphs.as_str()),
            (Engine::OnnxRuntime, precision)
        );
        let s = tract.config().image_size;
        for threads in [1, 2] {
            let (mut a, mut b) = (
                tract.new_state(threads).unwrap(),
                ort.new_state(threads).unwrap(),
            );
            for seed in 0..3 {
                let chw = input(s, seed);
                for pruning in [Pruning::Dense, tract.default_options().pruning] {
                    let opts = RunOptions {
                        pruning,
                        ..tract.default_options()
                    };
                    let x = tract.run_tensor(&mut a, &chw, &opts).unwrap();
                    let y = ort.run_tensor(&mut b, &chw, &opts).unwrap();
                    let what = format!("{precision}, {threads} threads, seed {seed}, {pruning:?}");
                    // Gate scores differ by rounding only, so only tokens on the threshold can
                    // change sides: one per block in f32; in int8 the engines' requantising
                    // rounds apart now and then, and a later gate sees it (measured: up to 3
                    // of 256). A wrong gate or scatter moves tens.
                    let slack = if precision == "int8" { 8 } else { 1 };
                    for (p, q) in x.kept.iter().zip(&y.kept) {
                        assert!(
                            p.abs_diff(*q) <= slack,
                            "{what}: kept {:?} vs {:?}",
                            x.kept,
                            y.kept
                        );
                    }
                    for (i, (p, q)) in a.head_outputs().iter().zip(b.head_outputs()).enumerate() {
                        assert_eq!(p.len(), q.len());
                        let scale = p.iter().fold(0f32, |m, v| m.max(v.abs()));
                        let diffs = p.iter().zip(q).map(|(u, v)| (u - v).abs());
                        // f32: kernel rounding (~1e-5 of the scale), everywhere. int8: the
                        // engines round requantised values apart now and then, attention
                        // spreads a flip over every token (as between tract's own thread
                        // counts, `consistency.rs`), and where a token was kept by one engine
                        // and not the other its outputs differ outright: so the mean, at 1% of
                        // the scale. A wrong stage is off by the whole scale everywhere.
                        let (err, tol) = if precision == "int8" {
                            (diffs.sum::<f32>() / p.len() as f32, 1e-2 * scale)
                        } else {
                            (diffs.fold(0f32, f32::max), 1e-3 * scale.max(1.0))
                        };
                        assert!(
                            err <= tol,
                            "{what}: output {i} differs by {err} (scale {scale})"
                        );
                    }
                    let slack = if precision == "int8" { 1 } else { 0 };
                    assert!(
                        x.detections.len().abs_diff(y.detections.len()) <= slack,
                        "{what}: detections {:?} vs {:?}",
                        x.detections,
                        y.detections
                    );
                }
            }
        }
    }
}

#[test]
fn engine_names_parse_and_unknown_ones_are_refused() {
    assert_eq!("tract".parse::<Engine>(), Ok(Engine::Tract));
    assert_eq!("onnxruntime".parse::<Engine>(), Ok(Engine::OnnxRuntime));
    let e = "tensorrt".parse::<Engine>().unwrap_err();
    assert!(e.contains("tract, onnxruntime or auto"), "{e}");
    // auto is tract or onnxruntime, whichever loads.
    let auto = Engine::choose("auto").unwrap();
    assert!(auto == Engine::Tract || svit_runtime::model::onnxruntime_library().is_ok());
}

/// With `ort-int8/` in the bundle, onnxruntime's int8 runs those graphs (tract keeps `int8/`),
/// and they compute what f32 does within int8 rounding: the same detections less one or two,
/// head outputs within 3% of their scale on average, tokens kept within 3% of N per block.
#[test]
fn onnxruntime_int8_is_its_own_quantizers_form_and_close_to_f32() {
    if !have_onnxruntime() {
        return;
    }
    let int8 = Model::load_with(&demo(), "int8", Engine::OnnxRuntime).unwrap();
    assert_eq!(int8.graphs, "ort-int8");
    assert_eq!(
        Model::load_with(&demo(), "int8", Engine::Tract)
            .unwrap()
            .graphs,
        "int8"
    );
    let f32 = Model::load_with(&demo(), "f32", Engine::OnnxRuntime).unwrap();
    let (mut a, mut b) = (f32.new_state(1).unwrap(), int8.new_state(1).unwrap());
    let n = f32.config().tokens();
    for seed in 0..3 {
        let chw = input(f32.config().image_size, seed);
        let opts = f32.default_options();
        let x = f32.run_tensor(&mut a, &chw, &opts).unwrap();
        let y = int8.run_tensor(&mut b, &chw, &opts).unwrap();
        for (p, q) in x.kept.iter().zip(&y.kept) {
            assert!(
                p.abs_diff(*q) <= n * 3 / 100,
                "seed {seed}: kept {:?} vs {:?}",
                x.kept,
                y.kept
            );
        }
        for (i, (p, q)) in a.head_outputs().iter().zip(b.head_outputs()).enumerate() {
            let scale = p.iter().fold(0f32, |m, v| m.max(v.abs()));
            let mean = p.iter().zip(q).map(|(u, v)| (u - v).abs()).sum::<f32>() / p.len() as f32;
            assert!(
                mean <= 3e-2 * scale,
                "seed {seed}: output {i} differs by {mean} on average (scale {scale})"
            );
        }
        assert!(
            x.detections.len().abs_diff(y.detections.len()) <= 2,
            "seed {seed}: {:?} vs {:?}",
            x.detections,
            y.detections
        );
    }
}
