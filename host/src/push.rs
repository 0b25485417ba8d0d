//! `svit-host push` and `svit-host rollback`: clients of a running `svit-host listen --http`,
//! which carries the bundle to its boards over their links (`web/push.rs`). They wait until each
//! board has switched (exit 0) or said why not (non-zero), showing the transfer's progress.
//!
//! A host that goes away mid-push (restarted) is waited for; once back it is asked again, and
//! the board resumes the transfer from the bytes it already holds.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(base: &str, token: Option<String>) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Api {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    /// One request: the status and the JSON answer, or an error naming what failed.
    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let res = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (_, body) => {
                let mut r = self.agent.post(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body.unwrap_or_default())
            }
        };
        let mut resp = res.with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        let json = serde_json::from_str(&text)
            .with_context(|| format!("{method} {url}: not a JSON answer: {text:.200}"))?;
        Ok((status, json))
    }

    /// Names of the boards connected to the host.
    pub fn connected_boards(&self) -> Result<Vec<String>> {
        let (code, v) = self.call("GET", "/api/boards", None)?;
        if code != 200 {
            bail!("listing boards: HTTP {code}: {}", error_of(&v));
        }
        let boards = v.as_array().cloned().unwrap_or_default();
        Ok(boards
            .iter()
            .filter(|b| b["connected"].as_bool() == Some(true))
            .filter_map(|b| b["name"].as_str().map(String::from))
            .collect())
    }
}

fn error_of(v: &Value) -> String {
    v["error"]
        .as_str()
        .map_or_else(|| v.to_string(), String::from)
}

/// A bundle as one tar in memory: a `.tar` as it is, a directory packed (manifest first).
pub fn read_bundle(path: &Path) -> Result<(String, Vec<u8>)> {
    let name = path
        .file_name()
        .map_or("bundle".into(), |n| n.to_string_lossy().into_owned());
    if path.is_file() {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok((name, bytes));
    }
    let manifest = path.join("manifest.json");
    if !manifest.is_file() {
        bail!(
            "{} is not a bundle: no manifest.json in it (give a bundle directory or its .tar)",
            path.display()
        );
    }
    let mut files = Vec::new();
    collect(path, path, &mut files)?;
    files.sort();
    let mut b = tar::Builder::new(Vec::new());
    for rel in files {
        b.append_path_with_name(path.join(&rel), &rel)
            .with_context(|| format!("packing {}", path.join(&rel).display()))?;
    }
    let bytes = b.into_inner().context("packing the bundle")?;
    Ok((format!("{name}.tar"), bytes))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            collect(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// What one board made of a push or rollback.
pub struct Outcome {
    pub board: String,
    pub status: Value,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(
            (self.status["kind"].as_str(), self.status["state"].as_str()),
            (Some("push"), Some("switched")) | (Some("rollback"), Some("rolled_back"))
        )
    }
}

/// Asks the host to push `tar` to each board and waits for every board's last word.
pub fn push(
    api: &Api,
    boards: &[String],
    name: &str,
    tar: &[u8],
    timeout: Duration,
) -> Result<Vec<Outcome>> {
    let path = |b: &str| format!("/api/boards/{}/bundle", url_escape(b));
    let ask = |b: &str| -> Result<Value> {
        let (code, v) = api.call(
            "POST",
            &format!("{}?name={}", path(b), url_escape(name)),
            Some(tar),
        )?;
        if code != 202 {
            bail!(
                "push to {b} refused by the host: HTTP {code}: {}",
                error_of(&v)
            );
        }
        Ok(v)
    };
    for b in boards {
        ask(b)?;
    }
    follow(api, boards, timeout, tar.len() as u64, &|b| path(b), &|b| {
        ask(b).map(|_| ())
    })
}

/// Asks the host to roll each board back and waits for their answers.
pub fn rollback(api: &Api, boards: &[String], timeout: Duration) -> Result<Vec<Outcome>> {
    for b in boards {
        let (code, v) = api.call(
            "POST",
            &format!("/api/boards/{}/rollback", url_escape(b)),
            None,
        )?;
        if code != 202 {
            bail!(
                "rollback of {b} refused by the host: HTTP {code}: {}",
                error_of(&v)
            );
        }
    }
    let path = |b: &str| format!("/api/boards/{}/bundle", url_escape(b));
    let lost = |b: &str| -> Result<()> {
        bail!("the host restarted and forgot the rollback of {b}; ask again")
    };
    follow(api, boards, timeout, 0, &path, &lost)
}

/// Polls each board's status until it ends; `again` re-asks a host that forgot (restarted).
fn follow(
    api: &Api,
    boards: &[String],
    timeout: Duration,
    size: u64,
    path: &dyn Fn(&str) -> String,
    again: &dyn Fn(&str) -> Result<()>,
) -> Result<Vec<Outcome>> {
    let bars = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut pending: Vec<(String, indicatif::ProgressBar)> = boards
        .iter()
        .map(|b| {
            let bar = bars.add(indicatif::ProgressBar::new(size));
            bar.set_style(style.clone());
            bar.set_prefix(b.clone());
            (b.clone(), bar)
        })
        .collect();
    let mut done = Vec::new();
    let started = Instant::now();
    let mut unreachable_since: Option<Instant> = None;
    while !pending.is_empty() {
        if started.elapsed() > timeout {
            bail!(
                "no answer within {timeout:?} from {}",
                pending
                    .iter()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
        let mut still = Vec::new();
        for (b, bar) in pending {
            match api.call("GET", &path(&b), None) {
                Ok((200, v)) => {
                    unreachable_since = None;
                    bar.set_position(v["received"].as_u64().unwrap_or(0));
                    bar.set_message(v["state"].as_str().unwrap_or("").to_string());
                    if matches!(
                        v["state"].as_str(),
                        Some("switched" | "rolled_back" | "refused")
                    ) {
                        bar.finish();
                        done.push(Outcome {
                            board: b,
                            status: v,
                        });
                    } else {
                        still.push((b, bar));
                    }
                }
                Ok((404, _)) => {
                    // A host that restarted knows nothing of it: ask again, once the board is
                    // back on it (until then the host does not know the board either).
                    match again(&b) {
                        Ok(()) => bar.set_message("asked the restarted host again"),
                        Err(e) => bar.set_message(format!("waiting for the board: {e:#}")),
                    }
                    still.push((b, bar));
                }
                Ok((code, v)) => bail!("status of {b}: HTTP {code}: {}", error_of(&v)),
                Err(e) => {
                    if unreachable_since.is_none() {
                        tracing::warn!("host API unreachable ({e:#}); waiting for it");
                    }
                    unreachable_since.get_or_insert_with(Instant::now);
                    bar.set_message("host unreachable, waiting");
                    still.push((b, bar));
                }
            }
        }
        pending = still;
    }
    Ok(done)
}

/// A board name as one URL path segment.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
