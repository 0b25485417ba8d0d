//! `svit-edge doctor` on the simulated ArduCAM, the simulated V4L2 camera and this machine's
//! missing devices: what a user pastes into a bug report.

use std::process::Command;

use svit_e2e::{bin, tmp, workspace};

fn doctor(name: &str, args: &[&str]) -> (bool, String, Option<serde_json::Value>) {
    let dir = tmp(name);
    let json = dir.0.join("doctor.json");
    let out = Command::new(bin("svit-edge"))
        .arg("doctor")
        .args(args)
        .arg("--json")
        .arg(&json)
        .current_dir(workspace())
        .output()
        .unwrap();
    let checks = std::fs::read(&json)
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap());
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        checks,
    )
}

fn find<'a>(checks: &'a serde_json::Value, section: &str) -> Vec<&'a serde_json::Value> {
    checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["section"] == section)
        .collect()
}

#[test]
fn a_working_simulated_board_passes_and_says_what_it_found() {
    for (camera, size) in [("sim-arducam:res=320x240", "320x240"), ("sim-v4l", "x")] {
        let (ok, text, checks) = doctor("doctor-sim", &["--camera", camera]);
        assert!(ok, "{text}");
        let checks = checks.expect("--json written");
        let cam = find(&checks, "camera");
        assert_eq!(cam[0]["status"], "ok", "{text}");
        assert!(cam[0]["detail"].as_str().unwrap().contains(size), "{text}");
        let bundle = find(&checks, "bundle");
        assert!(bundle
            .iter()
            .any(|c| c["name"] == "precision"
                && c["detail"].as_str().unwrap().starts_with("auto picks")));
        assert!(bundle
            .iter()
            .any(|c| c["name"] == "inference" && c["status"] == "ok"));
        assert!(text.contains("0 failed"), "{text}");
    }
}

#[test]
fn a_missing_device_fails_with_the_fix() {
    let (ok, text, checks) = doctor(
        "doctor-missing",
        &[
            "--camera",
            "arducam:spi=/dev/no-such-spidev,i2c=/dev/no-such-i2c",
        ],
    );
    assert!(!ok, "a failed check exits non-zero:\n{text}");
    let checks = checks.unwrap();
    let cam = find(&checks, "camera");
    assert_eq!(cam[0]["status"], "fail");
    let fix = cam[0]["fix"].as_str().unwrap();
    assert!(
        fix.contains("/dev/no-such-spidev does not exist") && fix.contains("dtparam=spi=on"),
        "{fix}"
    );
    // This machine has no SPI bus: needed by an ArduCAM, so a failure with the fix.
    let spi = find(&checks, "devices")
        .into_iter()
        .find(|c| c["name"] == "spi")
        .unwrap();
    assert_eq!(spi["status"], "fail", "{text}");
    assert!(text.contains("FAIL"), "{text}");
}

#[test]
fn a_broken_bundle_is_named() {
    let dir = tmp("doctor-bundle");
    std::fs::write(dir.0.join("manifest.json"), b"{not json").unwrap();
    let (ok, text, _) = doctor("doctor-broken", &["--bundle", dir.0.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("does not load"), "{text}");
}

#[test]
fn the_bundle_signature_is_checked_against_trusted_keys() {
    let dir = tmp("doctor-trust");
    let key = dir.0.join("k");
    svit_e2e::keygen(&key);
    let pubkey = key.with_extension("pub");
    // The shipped demo bundle is unsigned: a warning without keys, a failure with one.
    let (_, text, checks) = doctor("doctor-unsigned", &[]);
    let sig = find(checks.as_ref().unwrap(), "bundle")
        .into_iter()
        .find(|c| c["name"] == "signature")
        .cloned()
        .expect("a signature check");
    assert_eq!(sig["status"], "warn", "{text}");
    let (ok, text, checks) = doctor("doctor-trusting", &["--trust", pubkey.to_str().unwrap()]);
    assert!(!ok, "{text}");
    let sig = find(checks.as_ref().unwrap(), "bundle")
        .into_iter()
        .find(|c| c["name"] == "signature")
        .cloned()
        .unwrap();
    assert_eq!(sig["status"], "fail", "{text}");
    assert!(
        sig["detail"].as_str().unwrap().contains("not signed"),
        "{sig}"
    );
}
