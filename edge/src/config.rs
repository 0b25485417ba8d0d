//! `svit-edge run --config FILE`: `run`'s settings from a TOML file (the Debian package's
//! /etc/svit-edge/edge.toml). Each key is one of `run`'s long options (`budget_ms` or
//! `budget-ms` for `--budget-ms`); a string or number is its value, `true` a flag, an array a
//! repeated option (`trust = ["a.pub", "b.pub"]`). Options on the command line win over the
//! file's.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The command line with the file's settings put in front of the command line's own, if
/// `run --config FILE` is given; otherwise as it is.
pub fn expand(args: Vec<OsString>, run: &clap::Command) -> Result<Vec<OsString>> {
    if args.get(1).is_none_or(|a| a != "run") {
        return Ok(args);
    }
    let mut file = None;
    for (i, a) in args.iter().enumerate().skip(2) {
        let a = a.to_string_lossy();
        if a == "--config" {
            file = args.get(i + 1).map(|f| f.into());
        } else if let Some(f) = a.strip_prefix("--config=") {
            file = Some(f.into());
        }
    }
    let Some(file) = file else {
        return Ok(args);
    };
    let settings = settings(&file, run)?;
    let mut out = args[..2].to_vec();
    out.extend(settings);
    out.extend(args[2..].iter().cloned());
    Ok(out)
}

/// The file's settings as options.
fn settings(path: &std::path::PathBuf, run: &clap::Command) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the --config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    let longs: Vec<&str> = run.get_arguments().filter_map(|a| a.get_long()).collect();
    let mut out = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        if long == "config" || !longs.contains(&long.as_str()) {
            bail!(
                "{}: unknown setting `{key}`; settings are `svit-edge run` options: {}",
                path.display(),
                longs.join(", ")
            );
        }
        let values = match value {
            toml::Value::Array(items) => items,
            v => vec![v],
        };
        for v in values {
            push(&mut out, path, &key, &long, v)?;
        }
    }
    Ok(out)
}

fn push(out: &mut Vec<OsString>, path: &Path, key: &str, long: &str, v: toml::Value) -> Result<()> {
    let flag = format!("--{long}").into();
    match v {
        toml::Value::String(s) => out.extend([flag, s.into()]),
        toml::Value::Integer(n) => out.extend([flag, n.to_string().into()]),
        toml::Value::Float(x) => out.extend([flag, x.to_string().into()]),
        toml::Value::Boolean(true) => out.push(flag),
        toml::Value::Boolean(false) => {}
        other => bail!(
            "{}: setting `{key}` is a {}; give a string, a number, true or a list of them",
            path.display(),
            other.type_str()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn run() -> Command {
        Command::new("run")
            .args_override_self(true)
            .arg(Arg::new("camera").long("camera"))
            .arg(Arg::new("budget-ms").long("budget-ms"))
            .arg(Arg::new("trust").long("trust").action(ArgAction::Append))
            .arg(Arg::new("config").long("config"))
    }

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let p =
            std::env::temp_dir().join(format!("svit-config-{name}-{}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn argv(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn settings_come_first_and_the_command_line_wins() {
        let f = file(
            "ok",
            "camera = \"synthetic\"\nbudget_ms = 40\ntrust = [\"a.pub\", \"b.pub\"]\n",
        );
        let args = argv(&[
            "svit-edge",
            "run",
            "--config",
            f.to_str().unwrap(),
            "--camera",
            "v4l",
        ]);
        let out = expand(args, &run()).unwrap();
        let m = run().try_get_matches_from(&out[1..]).unwrap();
        assert_eq!(m.get_one::<String>("camera").unwrap(), "v4l");
        assert_eq!(m.get_one::<String>("budget-ms").unwrap(), "40");
        let trust: Vec<_> = m.get_many::<String>("trust").unwrap().collect();
        assert_eq!(trust, ["a.pub", "b.pub"]);
        let _ = std::fs::remove_file(f);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let f = file("bad", "camra = \"x\"\n");
        let e = expand(
            argv(&["svit-edge", "run", "--config", f.to_str().unwrap()]),
            &run(),
        );
        let e = format!("{:#}", e.unwrap_err());
        assert!(e.contains("camra") && e.contains("camera"), "{e}");
        std::fs::write(&f, "camera = { a = 1 }\n").unwrap();
        let e = expand(
            argv(&["svit-edge", "run", "--config", f.to_str().unwrap()]),
            &run(),
        );
        assert!(format!("{:#}", e.unwrap_err()).contains("`camera` is a table"));
        std::fs::write(&f, "camera = \n").unwrap();
        let e = expand(
            argv(&["svit-edge", "run", "--config", f.to_str().unwrap()]),
            &run(),
        );
        assert!(format!("{:#}", e.unwrap_err()).contains("not valid TOML"));
        let _ = std::fs::remove_file(f);
        // No --config: the command line as it is.
        let args = argv(&["svit-edge", "run", "--camera", "x"]);
        assert_eq!(expand(args.clone(), &run()).unwrap(), args);
    }
}
