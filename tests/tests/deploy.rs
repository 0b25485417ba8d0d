//! `scripts/deploy.sh --dry-run`: the package it would install, the edge.toml it would write
//! (which `svit-edge run --config` takes), and its refusals.

use std::process::Command;

use svit_e2e::workspace;

fn deploy(args: &[&str]) -> (bool, String) {
    let out = Command::new("bash")
        .arg(workspace().join("scripts/deploy.sh"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("run deploy.sh");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The edge.toml a dry run prints, checked by `svit-edge run --config` (every key one of its
/// options; `--help` stops before anything runs).
fn config_of(out: &str, name: &str) -> String {
    let toml = out
        .split("--- /etc/svit-edge/edge.toml\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no edge.toml in: {out}"))
        .to_string();
    let dir = svit_e2e::tmp(name);
    let f = dir.join("edge.toml");
    std::fs::write(&f, &toml).unwrap();
    let check = Command::new(svit_e2e::bin("svit-edge"))
        .args(["run", "--config"])
        .arg(&f)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "svit-edge refuses the edge.toml: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    toml
}

#[test]
fn dry_run_prints_the_package_and_config_it_would_install() {
    let (ok, out) = deploy(&[
        "--host",
        "pi@raspberrypi.local",
        "--listen",
        "0.0.0.0:7879",
        "--key",
        "Cargo.toml",
        "--glibc",
        "2.31",
        "--dry-run",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("cargo zigbuild --release --target aarch64-unknown-linux-gnu.2.31"));
    assert!(out.contains("scripts/package.sh --target aarch64-unknown-linux-gnu"));
    assert!(out.contains("apt-get install ./svit-edge_"), "{out}");
    let toml = config_of(&out, "deploy-config");
    for line in [
        "bundle = \"/usr/share/svit-edge/models/demo\"",
        "camera = \"arducam\"",
        "listen = \"0.0.0.0:7879\"",
        "key = \"/etc/svit-edge/key\"",
        "store = \"/var/lib/svit-edge\"",
    ] {
        assert!(
            toml.lines().any(|l| l == line),
            "{line} missing from: {toml}"
        );
    }
}

#[test]
fn missing_pieces_are_named() {
    let (ok, out) = deploy(&["--connect", "h:1", "--dry-run"]);
    assert!(!ok && out.contains("--host"), "{out}");
    let (ok, out) = deploy(&["--host", "pi@b", "--dry-run"]);
    assert!(!ok && out.contains("--connect"), "{out}");
    let (ok, out) = deploy(&[
        "--host",
        "pi@b",
        "--connect",
        "h:1",
        "--bundle",
        "nope",
        "--dry-run",
    ]);
    assert!(!ok && out.contains("nope/manifest.json"), "{out}");
}

#[test]
fn a_trusted_key_goes_into_the_unit_and_an_unsigned_bundle_is_refused() {
    let dir = svit_e2e::tmp("deploy-trust");
    let bundle = svit_e2e::copy_bundle(&workspace().join("models/demo"), "deploy-signed", |_| true);
    let key = dir.join("release");
    svit_e2e::keygen(&key);
    let pubkey = key.with_extension("pub");
    let args = |b: &std::path::Path| {
        vec![
            "--host".to_string(),
            "pi@b".into(),
            "--connect".into(),
            "h:1".into(),
            "--bundle".into(),
            b.display().to_string(),
            "--trust".into(),
            pubkey.display().to_string(),
            "--dry-run".into(),
        ]
    };
    let run = |b: &std::path::Path| {
        let a = args(b);
        deploy(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (ok, out) = run(&bundle);
    assert!(!ok && out.contains("not signed"), "{out}");
    let signed = Command::new(svit_e2e::bin("svit-export"))
        .arg("sign")
        .arg("--key")
        .arg(key.with_extension("key"))
        .arg(&*bundle)
        .output()
        .unwrap();
    assert!(signed.status.success());
    let (ok, out) = run(&bundle);
    assert!(ok, "{out}");
    let toml = config_of(&out, "deploy-trust-config");
    assert!(
        toml.contains("trust = [\"/etc/svit-edge/trust.pub\"]"),
        "{toml}"
    );
    // Not the demo bundle the package carries: copied beside it.
    assert!(toml.contains("bundle = \"/opt/svit-edge/models/"), "{toml}");
}
