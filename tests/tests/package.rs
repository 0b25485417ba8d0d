//! The Debian package (`scripts/package.sh`, cargo-deb) of the debug build: its control fields
//! and contents, the conffile, the packaged program running on the packaged config and bundle,
//! and the systemd unit through `systemd-analyze verify`. (CI also packages the aarch64 build;
//! installing it needs a board or a container with systemd, which the tests do not have.)

use std::path::Path;
use std::process::Command;

use svit_e2e::{bin, has_tool, tmp, workspace};

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpkg-deb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_package_holds_the_program_bundle_unit_and_config() {
    let required = std::env::var_os("SVIT_REQUIRE_PACKAGING").is_some();
    let have = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have || !has_tool("dpkg-deb", "--version", "dpkg") {
        assert!(
            !required,
            "cargo-deb and dpkg-deb are needed (cargo install cargo-deb)"
        );
        eprintln!("skipped: cargo-deb is not installed (cargo install --locked cargo-deb)");
        return;
    }
    bin("svit-edge"); // built
    let dir = tmp("package");
    let out = Command::new("bash")
        .arg(workspace().join("scripts/package.sh"))
        .args(["--no-build", "--profile", "dev", "--out"])
        .arg(&*dir)
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = dir.join(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .rsplit('/')
            .next()
            .unwrap(),
    );
    assert!(deb.exists(), "{}", deb.display());

    let control = dpkg_deb(&["-f"], &deb);
    for field in ["Package: svit-edge", "Section: misc", "Maintainer: "] {
        assert!(control.contains(field), "{field} missing: {control}");
    }
    let arch = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .unwrap();
    let arch = String::from_utf8_lossy(&arch.stdout).trim().to_string();
    assert!(
        control.contains(&format!("Architecture: {arch}")),
        "{control}"
    );
    assert!(
        control.contains("libc6") && control.contains("adduser"),
        "{control}"
    );

    // Every file of the demo bundle, the program, the unit and the config.
    let contents = dpkg_deb(&["-c"], &deb);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace().join("models/demo/manifest.json")).unwrap(),
    )
    .unwrap();
    let mut want: Vec<String> = manifest["files"]
        .as_object()
        .unwrap()
        .keys()
        .map(|rel| format!("./usr/share/svit-edge/models/demo/{rel}"))
        .collect();
    want.extend(
        [
            "./usr/share/svit-edge/models/demo/manifest.json",
            "./usr/bin/svit-edge",
            "./usr/lib/systemd/system/svit-edge.service",
            "./etc/svit-edge/edge.toml",
        ]
        .map(String::from),
    );
    for w in &want {
        assert!(
            contents.lines().any(|l| l.ends_with(w.as_str())),
            "{w} missing from the package"
        );
    }
    let ctl = dir.join("control");
    let st = Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(&ctl)
        .status()
        .unwrap();
    assert!(st.success());
    let conffiles = std::fs::read_to_string(ctl.join("conffiles")).unwrap();
    assert!(
        conffiles.lines().any(|l| l == "/etc/svit-edge/edge.toml"),
        "{conffiles}"
    );
    let postinst = std::fs::read_to_string(ctl.join("postinst")).unwrap();
    assert!(
        postinst.contains("adduser --system") && postinst.contains("spi i2c gpio"),
        "{postinst}"
    );

    // The packaged program on the packaged config and bundle (paths moved under the root).
    let root = dir.join("root");
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    let run = Command::new(root.join("usr/bin/svit-edge"))
        .args(["run", "--config"])
        .arg(root.join("etc/svit-edge/edge.toml"))
        .arg("--bundle")
        .arg(root.join("usr/share/svit-edge/models/demo"))
        .arg("--store")
        .arg(dir.join("store"))
        .args(["--frames", "2"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let frames = String::from_utf8_lossy(&run.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .count();
    assert_eq!(frames, 2);

    // The unit as systemd reads it (its ExecStart pointed at the extracted program).
    if has_tool("systemd-analyze", "--version", "systemd") {
        let unit =
            std::fs::read_to_string(root.join("usr/lib/systemd/system/svit-edge.service")).unwrap();
        for line in [
            "User=svit-edge",
            "Restart=on-failure",
            "StateDirectory=svit-edge",
            "DeviceAllow=char-spi rw",
        ] {
            assert!(
                unit.lines().any(|l| l == line),
                "{line} missing from the unit"
            );
        }
        let copy = dir.join("svit-edge.service");
        let exe = root.join("usr/bin/svit-edge");
        std::fs::write(
            &copy,
            unit.replace("/usr/bin/svit-edge", exe.to_str().unwrap()),
        )
        .unwrap();
        let v = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let said =
            String::from_utf8_lossy(&v.stdout).into_owned() + &String::from_utf8_lossy(&v.stderr);
        assert!(
            v.status.success() && said.trim().is_empty(),
            "systemd-analyze verify: {said}"
        );
    } else {
        assert!(
            !required,
            "systemd-analyze is needed (apt-get install systemd)"
        );
    }
}
