//! `scripts/deploy.sh --dry-run`: the systemd unit it would install, and its refusals.

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

#[test]
fn dry_run_prints_the_unit_it_would_install() {
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
    assert!(out.contains("User=pi"));
    assert!(out.contains("Restart=on-failure"));
    assert!(out.contains("SupplementaryGroups=spi i2c gpio video"));
    assert!(out.contains(
        "ExecStart=/usr/local/bin/svit-edge run --bundle /opt/svit-edge/models/demo --camera arducam --listen 0.0.0.0:7879 --key /etc/svit-edge/key"
    ), "{out}");
    assert!(
        !out.contains("@USER@") && !out.contains("@LINK@"),
        "placeholders left: {out}"
    );
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
