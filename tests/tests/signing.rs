//! Signed bundles through the real binaries: `svit-export keygen` and `sign`, and a board that
//! runs only what a trusted key signed (`svit-edge run --trust`), naming the key when it refuses.

use std::path::Path;
use std::process::{Command, Output};

use svit_e2e::{bin, copy_bundle, tmp, workspace};

fn export(args: &[&str]) -> Output {
    Command::new(bin("svit-export"))
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap()
}

/// `svit-edge run` on `bundle` for two synthetic frames with these `--trust` keys.
fn run(bundle: &Path, trust: &[&Path]) -> (bool, String) {
    let mut c = Command::new(bin("svit-edge"));
    c.args(["run", "--camera", "synthetic", "--frames", "2", "--bundle"])
        .arg(bundle);
    for t in trust {
        c.arg("--trust").arg(t);
    }
    let out = c.current_dir(workspace()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_board_runs_only_what_a_trusted_key_signed() {
    let dir = tmp("signing");
    let demo = workspace().join("models/demo");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let (a_id, b_id) = (svit_e2e::keygen(&a), svit_e2e::keygen(&b));
    let (a_pub, b_pub) = (a.with_extension("pub"), b.with_extension("pub"));
    // Keys are not replaced by accident.
    let again = export(&["keygen", "--out", a.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));

    let signed = copy_bundle(&demo, "signing-bundle", |_| true);
    let out = export(&[
        "sign",
        "--key",
        a.with_extension("key").to_str().unwrap(),
        "--tar",
        signed.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Signed by a, trusting a: runs, and says so; also from the packed .tar.
    let (ok, err) = run(&signed, &[&a_pub]);
    assert!(ok, "{err}");
    assert!(err.contains(&format!("trusted key {a_id}")), "{err}");
    let tar = signed.with_extension("tar");
    let (ok, err) = run(&tar, &[&a_pub]);
    let _ = std::fs::remove_file(&tar);
    assert!(ok, "{err}");
    // Trusting only b: refused, naming both keys.
    let (ok, err) = run(&signed, &[&b_pub]);
    assert!(!ok);
    assert!(err.contains(&a_id) && err.contains(&b_id), "{err}");
    // Either of two trusted keys will do.
    assert!(run(&signed, &[&b_pub, &a_pub]).0);

    // Changed after signing (a default edited in the manifest): refused.
    let manifest = signed.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let edited = text.replacen("\"threshold\": 0.5", "\"threshold\": 0.9", 1);
    assert_ne!(text, edited, "the demo manifest has a threshold to edit");
    std::fs::write(&manifest, edited).unwrap();
    let (ok, err) = run(&signed, &[&a_pub]);
    assert!(!ok);
    assert!(err.contains("changed after it was signed"), "{err}");

    // Unsigned: refused with keys, run with a warning without.
    let unsigned = copy_bundle(&demo, "signing-unsigned", |_| true);
    let (ok, err) = run(&unsigned, &[&a_pub]);
    assert!(!ok);
    assert!(err.contains("not signed") && err.contains(&a_id), "{err}");
    let (ok, err) = run(&unsigned, &[]);
    assert!(ok, "{err}");
    assert!(err.contains("not checked against a signing key"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // A secret key given as a public one is named as such.
    let (ok, err) = run(&unsigned, &[&a.with_extension("key")]);
    assert!(!ok);
    assert!(err.contains("svit-ed25519-secret key file"), "{err}");
}
