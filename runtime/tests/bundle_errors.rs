//! A broken bundle gets an error that names the file and the problem, never a panic.

use std::path::{Path, PathBuf};

use svit_e2e::TempDir;
use svit_runtime::{BundleError, Model, RunError};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo")
}

/// A copy of the demo bundle in a temporary directory (removed when dropped).
fn copy_demo(name: &str) -> TempDir {
    svit_e2e::copy_bundle(&demo(), &format!("bundle-{name}"), |_| true)
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn missing_bundle_names_the_manifest() {
    let e = Model::load(Path::new("/nonexistent/bundle"), "f32")
        .err()
        .unwrap();
    assert!(matches!(e, BundleError::Missing { .. }));
    assert!(
        e.to_string().contains("/nonexistent/bundle/manifest.json"),
        "{e}"
    );
}

#[test]
fn corrupt_manifest_is_reported() {
    let d = copy_demo("json");
    std::fs::write(d.join("manifest.json"), b"{ not json").unwrap();
    let e = Model::load(&d, "f32").err().unwrap();
    assert!(
        matches!(e, BundleError::Manifest { .. }) && e.to_string().contains("manifest.json"),
        "{e}"
    );
}

#[test]
fn wrong_format_version_names_both() {
    let d = copy_demo("version");
    edit_manifest(&d, |v| v["format_version"] = 99.into());
    let e = Model::load(&d, "f32").err().unwrap().to_string();
    assert!(
        e.contains("99") && e.contains(&svit_runtime::FORMAT_VERSION.to_string()),
        "{e}"
    );
}

#[test]
fn changed_file_fails_its_hash() {
    let d = copy_demo("hash");
    let p = d.join("f32/block_3.onnx");
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&p, bytes).unwrap();
    let e = Model::load(&d, "f32").err().unwrap();
    assert!(
        matches!(&e, BundleError::Hash { path, .. } if path.ends_with("f32/block_3.onnx")),
        "{e}"
    );
}

#[test]
fn missing_stage_file_is_named() {
    let d = copy_demo("missing");
    std::fs::remove_file(d.join("f32/gate_4.onnx")).unwrap();
    let e = Model::load(&d, "f32").err().unwrap();
    assert!(
        e.to_string().contains("gate_4.onnx") && e.to_string().contains("missing"),
        "{e}"
    );
}

#[test]
fn unknown_precision_lists_what_there_is() {
    let e = Model::load(&demo(), "int4").err().unwrap().to_string();
    assert!(
        e.contains("int4") && e.contains("f32") && e.contains("int8"),
        "{e}"
    );
    // A bundle exported without int8 says so when int8 is asked for.
    let d = copy_demo("no-int8");
    edit_manifest(&d, |v| {
        v["precisions"] = serde_json::json!(["f32"]);
    });
    let e = Model::load(&d, "int8").err().unwrap().to_string();
    assert!(e.contains("int8") && e.contains("f32"), "{e}");
}

#[test]
fn inconsistent_config_is_refused() {
    let d = copy_demo("config");
    edit_manifest(&d, |v| {
        v["labels"]
            .as_array_mut()
            .unwrap()
            .pop()
            .map(|_| ())
            .unwrap()
    });
    let e = Model::load(&d, "f32").err().unwrap().to_string();
    assert!(e.contains("labels"), "{e}");
    edit_manifest(&d, |v| {
        v["labels"].as_array_mut().unwrap().push("cross".into());
        v["defaults"]["box_from_mask"] = 1.5.into();
    });
    let e = Model::load(&d, "f32").err().unwrap().to_string();
    assert!(e.contains("box_from_mask is 1.5"), "{e}");
}

#[test]
fn wrong_frame_shape_is_an_input_error() {
    let m = Model::load(&demo(), "f32").unwrap();
    let mut st = m.new_state(1).unwrap();
    let opts = m.default_options();
    let e = m
        .run_rgb(&mut st, &[0u8; 100], 10, 10, &opts)
        .err()
        .unwrap();
    assert!(
        matches!(e, RunError::Input(_)) && e.to_string().contains("3 channels"),
        "{e}"
    );
    let e = m.run_rgb(&mut st, &[], 0, 0, &opts).err().unwrap();
    assert!(matches!(e, RunError::Input(_)));
    let mut chw = vec![0f32; 3 * 256 * 256];
    chw[7] = f32::NAN;
    assert!(matches!(
        m.run_tensor(&mut st, &chw, &opts),
        Err(RunError::NonFinite { .. })
    ));
    // A frame of another size is resized, not refused.
    let out = m
        .run_rgb(&mut st, &vec![128u8; 320 * 240 * 3], 320, 240, &opts)
        .unwrap();
    assert!(out
        .detections
        .iter()
        .all(|d| d.bbox[2] <= 320.0 && d.bbox[3] <= 240.0));
}

/// The same bundle as one `.tar` (flat, or under a top folder) loads and runs like the
/// directory; a corrupt entry is named as `bundle.tar:entry`.
#[test]
fn tar_bundles_load_and_corrupt_entries_are_named() {
    let dir = copy_demo("tar");
    let files: Vec<String> = {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let mut v: Vec<String> = m["files"].as_object().unwrap().keys().cloned().collect();
        v.push("manifest.json".into());
        v
    };
    let pack = |path: &Path, prefix: &str, corrupt: Option<&str>| {
        let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
        for rel in &files {
            let mut bytes = std::fs::read(dir.join(rel)).unwrap();
            if Some(rel.as_str()) == corrupt {
                let n = bytes.len();
                bytes[n / 2] ^= 0xFF;
            }
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("{prefix}{rel}"), &bytes[..])
                .unwrap();
        }
        b.finish().unwrap();
    };
    let tars = svit_e2e::tmp("bundle-tars");
    let flat = tars.join("demo.tar");
    pack(&flat, "", None);
    let m = Model::load(&flat, "f32").unwrap();
    let mut st = m.new_state(1).unwrap();
    let rgb = vec![128u8; 256 * 256 * 3];
    let a = m
        .run_rgb(&mut st, &rgb, 256, 256, &m.default_options())
        .unwrap();
    let d = Model::load(&dir, "f32").unwrap();
    let mut st2 = d.new_state(1).unwrap();
    let b = d
        .run_rgb(&mut st2, &rgb, 256, 256, &d.default_options())
        .unwrap();
    assert_eq!(a.kept, b.kept);
    assert_eq!(st.head_outputs(), st2.head_outputs());

    let nested = tars.join("demo.nested.tar");
    pack(&nested, "demo/", None);
    assert!(Model::load(&nested, "f32").is_ok());

    let bad = tars.join("demo.bad.tar");
    pack(&bad, "", Some("f32/head.onnx"));
    let e = Model::load(&bad, "f32").err().unwrap();
    assert!(matches!(e, BundleError::Hash { .. }));
    assert!(e.to_string().contains("bad.tar:f32/head.onnx"), "{e}");

    std::fs::write(&bad, b"not a tar at all, just some bytes that go on and on").unwrap();
    let e = Model::load(&bad, "f32").err().unwrap().to_string();
    assert!(e.contains("bad.tar"), "{e}");
}

#[test]
fn auto_precision_picks_among_what_the_bundle_has() {
    let m = Model::load(&demo(), "auto").unwrap();
    assert_eq!(
        m.precision,
        svit_runtime::pick_precision(&m.manifest.precisions)
    );
    assert!(m.manifest.precisions.contains(&m.precision));
    // x86: int8 with AVX-512 VNNI, else f32 (no fp16 arithmetic). An Arm core picks int8 with
    // dot products, else f16 with fp16 arithmetic.
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        m.precision,
        if std::arch::is_x86_feature_detected!("avx512vnni") {
            "int8"
        } else {
            "f32"
        }
    );
    let only_f32 = svit_runtime::pick_precision(&["f32".to_string()]);
    assert_eq!(only_f32, "f32");
    let all = ["f32", "f16", "int8"].map(String::from);
    assert!(["f32", "f16", "int8"].contains(&svit_runtime::pick_precision(&all).as_str()));
}
