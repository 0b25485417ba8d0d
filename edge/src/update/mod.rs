//! Bundles pushed to a running board (PROTOCOL.md, "Pushing a bundle"), on the updater thread:
//! chunks written to the store (`store.rs`) as they come, then the whole tar's SHA-256, its
//! signature against `--trust`, a load into a second model and one test frame, all off the
//! frame path; then the inference thread switches between two frames (`slot.rs`) and the
//! store keeps the bundle it replaced for `svit-host rollback`.
//!
//! Every answer goes to the host as `EdgeMsg::Push` through the outbox, beside the frames. The
//! host re-offers when answers stop, so an answer lost on the way (the outbox keeps the newest
//! messages) or a dropped link costs a resend, not the transfer.

pub mod slot;
pub mod store;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use svit_protocol::push::{short_hash, CHUNK};
use svit_protocol::{EdgeMsg, ModelInfo, Push, PushStatus};
use svit_runtime::signature::{check_bundle, Trust};
use svit_runtime::{Engine, Manifest, Model};

use crate::control::Control;
use crate::queue::Queue;
pub use slot::Slot;
use slot::{Event, Outcome, Switch};
use store::Store;

/// How the board loads bundles, as it loaded the first.
pub struct Loading {
    pub trust: Vec<PathBuf>,
    pub precision: String,
    pub engine: Engine,
    pub threads: usize,
}

/// What the hello says of a bundle.
pub fn model_info(manifest: &Manifest, signed_by: Option<String>) -> ModelInfo {
    let cfg = &manifest.config;
    ModelInfo {
        bundle: manifest.name.clone(),
        labels: manifest.labels.clone(),
        input_size: cfg.image_size as u16,
        tokens: cfg.tokens() as u16,
        blocks: cfg.depth as u16,
        threshold: manifest.defaults.threshold,
        hash: manifest.digest.get(..16).unwrap_or_default().to_string(),
        signed_by,
    }
}

/// The bundle's signature against the trusted keys (`--trust`): an error unless signed by one
/// of them; without keys, accepted with a warning. The signer's key id, if checked.
pub fn check_signature(bundle: &Path, trust: &[PathBuf]) -> anyhow::Result<Option<String>> {
    use anyhow::Context;
    match check_bundle(bundle, trust).with_context(|| format!("bundle {}", bundle.display()))? {
        Trust::Signed { key_id } => {
            tracing::info!("bundle {} signed by trusted key {key_id}", bundle.display());
            Ok(Some(key_id))
        }
        Trust::Unchecked { signed_by } => {
            tracing::warn!(
                "bundle {} is not checked against a signing key ({}): give the board the \
                 signer's public key with --trust",
                bundle.display(),
                signed_by.map_or("it is unsigned".into(), |k| format!("signed by key {k}"))
            );
            Ok(None)
        }
    }
}

/// A transfer under way.
struct Receiving {
    sha256: [u8; 32],
    size: u64,
    name: String,
    file: std::fs::File,
    have: u64,
}

/// A checked model handed to the inference thread, until it says how it went.
struct Pending {
    path: PathBuf,
    info: ModelInfo,
    sha256: Option<[u8; 32]>,
    rollback: bool,
}

pub struct Updater {
    store: Option<Store>,
    loading: Loading,
    /// The bundle running now, and the SHA-256 of the tar it came in, if pushed.
    running: PathBuf,
    running_sha: Option<[u8; 32]>,
    switched_at: u64,
    receiving: Option<Receiving>,
    pending: Option<Pending>,
    slot: Arc<Slot>,
    ctl: Arc<Control>,
    out: Arc<Queue<EdgeMsg>>,
    tx: SyncSender<Event>,
    rx: Receiver<Event>,
}

/// Starts the updater thread and routes the host's push messages to it (`Control::apply`).
pub fn spawn(
    store: Option<Store>,
    loading: Loading,
    running: PathBuf,
    slot: Arc<Slot>,
    ctl: Arc<Control>,
    out: Arc<Queue<EdgeMsg>>,
) -> anyhow::Result<()> {
    // Bounded: a host that floods chunks loses some and resends them after our `Want`.
    let (tx, rx) = mpsc::sync_channel(2 * svit_protocol::push::WINDOW as usize);
    let pushes = tx.clone();
    let _ = ctl
        .pushes
        .set(Box::new(move |p| pushes.try_send(Event::Push(p)).is_ok()));
    let u = Updater {
        store,
        loading,
        running,
        running_sha: None,
        switched_at: 0,
        receiving: None,
        pending: None,
        slot,
        ctl,
        out,
        tx,
        rx,
    };
    std::thread::Builder::new()
        .name("update".into())
        .spawn(move || u.run())?;
    Ok(())
}

impl Updater {
    fn run(mut self) {
        loop {
            let ev = match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(ev) => ev,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.ctl.stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let answers = match ev {
                Event::Push(p) => self.on_push(p),
                Event::Outcome(o) => self.on_outcome(o),
            };
            for a in answers {
                match &a {
                    PushStatus::Refused { reason } => tracing::warn!("push refused: {reason}"),
                    PushStatus::RolledBack { reason, .. } => {
                        tracing::warn!("back on the previous bundle: {reason}")
                    }
                    PushStatus::Switched { model, seq } => tracing::info!(
                        "now running bundle {} ({}) from frame {seq}",
                        model.bundle,
                        model.hash
                    ),
                    _ => {}
                }
                self.out.push(EdgeMsg::Push(a));
            }
        }
    }

    fn on_push(&mut self, p: Push) -> Vec<PushStatus> {
        let refuse = |reason: String| vec![PushStatus::Refused { reason }];
        if self.store.is_none() {
            return refuse(
                "this board keeps no bundle store: start svit-edge with --store DIR to take \
                 pushed bundles"
                    .into(),
            );
        }
        match p {
            Push::Offer { sha256, size, name } => {
                match &self.pending {
                    // Offered again (a host that restarted meanwhile): it is on its way in.
                    Some(p) if p.sha256 == Some(sha256) => {
                        return vec![PushStatus::Checking { sha256 }];
                    }
                    Some(_) => {
                        return refuse(
                            "busy: the board is switching to another bundle; push again after"
                                .into(),
                        )
                    }
                    None => {}
                }
                if self.running_sha == Some(sha256) {
                    return vec![PushStatus::Switched {
                        model: self.info(),
                        seq: self.switched_at,
                    }];
                }
                match self.offer(sha256, size, name) {
                    Ok(answer) => answer,
                    Err(reason) => refuse(reason),
                }
            }
            Push::Chunk { offset, data } => self.chunk(offset, &data),
            Push::Rollback => {
                if self.pending.is_some() {
                    return refuse("busy: the board is switching bundles".into());
                }
                self.receiving = None;
                match self.rollback() {
                    Ok(()) => Vec::new(),
                    Err(reason) => refuse(reason),
                }
            }
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("checked in on_push")
    }

    /// The running bundle as the hello names it (signer included; `run` sets it at start).
    fn info(&self) -> ModelInfo {
        self.ctl.model_info().unwrap_or_default()
    }

    fn offer(
        &mut self,
        sha256: [u8; 32],
        size: u64,
        name: String,
    ) -> Result<Vec<PushStatus>, String> {
        let max = svit_runtime::files::MAX_TAR;
        if size > max {
            return Err(format!(
                "{name} is {} MB; a board takes bundles up to {} MB",
                size >> 20,
                max >> 20
            ));
        }
        let store = self.store();
        let (file, have) = store.stage(&sha256, size).map_err(|e| e.to_string())?;
        let free = store.free_bytes().map_err(|e| e.to_string())?;
        // The rest of the transfer, and room to spare for the system.
        let need = size - have + (16 << 20);
        if free < need {
            return Err(format!(
                "not enough space for {name}: it needs {} MB in {}, {} MB are free",
                need >> 20,
                store.dir().display(),
                free >> 20
            ));
        }
        if have > 0 {
            tracing::info!("resuming the transfer of {name} at byte {have} of {size}");
        } else {
            tracing::info!(
                "receiving bundle {name} ({size} bytes, sha256 {})",
                short_hash(&sha256)
            );
        }
        self.receiving = Some(Receiving {
            sha256,
            size,
            name,
            file,
            have,
        });
        if have == size {
            return Ok(self.received());
        }
        Ok(vec![PushStatus::Want {
            sha256,
            offset: have,
        }])
    }

    fn chunk(&mut self, offset: u64, data: &[u8]) -> Vec<PushStatus> {
        let Some(r) = self.receiving.as_mut() else {
            // Late chunks of a finished or abandoned transfer.
            return Vec::new();
        };
        if offset != r.have {
            // Lost or repeated on the way: say where to go on from.
            return vec![PushStatus::Want {
                sha256: r.sha256,
                offset: r.have,
            }];
        }
        if data.len() > CHUNK || r.have + data.len() as u64 > r.size {
            let reason = format!(
                "{}: a chunk past the offered size or over {CHUNK} bytes",
                r.name
            );
            self.receiving = None;
            return vec![PushStatus::Refused { reason }];
        }
        if let Err(e) = r.file.write_all(data) {
            let reason = format!("writing {} to the store: {e}", r.name);
            self.receiving = None;
            return vec![PushStatus::Refused { reason }];
        }
        r.have += data.len() as u64;
        if r.have < r.size {
            return vec![PushStatus::Want {
                sha256: r.sha256,
                offset: r.have,
            }];
        }
        self.received()
    }

    /// The whole tar is in: verify it, load it, hand it to the inference thread.
    fn received(&mut self) -> Vec<PushStatus> {
        let Some(r) = self.receiving.take() else {
            return Vec::new();
        };
        if let Err(e) = r.file.sync_all() {
            tracing::warn!("syncing the received bundle: {e}");
        }
        drop(r.file);
        self.out
            .push(EdgeMsg::Push(PushStatus::Checking { sha256: r.sha256 }));
        let path = match self.store().finish(&r.sha256) {
            Ok(Ok(p)) => p,
            Ok(Err(reason)) => return vec![PushStatus::Refused { reason }],
            Err(e) => {
                return vec![PushStatus::Refused {
                    reason: e.to_string(),
                }]
            }
        };
        match self.load(&path) {
            Ok(()) => {
                if let Some(p) = self.pending.as_mut() {
                    p.sha256 = Some(r.sha256);
                }
                Vec::new()
            }
            Err(reason) => {
                self.store().discard(&path);
                vec![PushStatus::Refused {
                    reason: format!("{}: {reason}", r.name),
                }]
            }
        }
    }

    fn rollback(&mut self) -> Result<(), String> {
        let previous = self
            .store()
            .previous()
            .map(Path::to_path_buf)
            .ok_or("no previous bundle to go back to: nothing was pushed to this board yet")?;
        if !previous.exists() {
            return Err(format!(
                "the previous bundle {} is gone",
                previous.display()
            ));
        }
        self.load(&previous)?;
        if let Some(p) = self.pending.as_mut() {
            p.rollback = true;
        }
        Ok(())
    }

    /// Signature, model, one test frame; then the switch is offered to the inference thread.
    fn load(&mut self, path: &Path) -> Result<(), String> {
        let l = &self.loading;
        let signed_by = check_signature(path, &l.trust).map_err(|e| format!("{e:#}"))?;
        let model = Model::load_with(path, &l.precision, l.engine)
            .map_err(|e| format!("it does not load: {e}"))?;
        test_frame(&model, l.threads).map_err(|e| format!("it fails on a test frame: {e}"))?;
        let info = model_info(&model.manifest, signed_by);
        self.slot.offer(Switch {
            model: Arc::new(model),
            reply: self.tx.clone(),
        });
        self.pending = Some(Pending {
            path: path.to_path_buf(),
            info,
            sha256: None,
            rollback: false,
        });
        Ok(())
    }

    fn on_outcome(&mut self, o: Outcome) -> Vec<PushStatus> {
        let Some(p) = self.pending.take() else {
            return Vec::new();
        };
        match o {
            Outcome::Running { seq } => {
                if let Some(store) = self.store.as_mut() {
                    if let Err(e) = store.switched(&p.path, &self.running) {
                        tracing::warn!("the store did not record the switch: {e}");
                    }
                }
                self.running = p.path;
                self.running_sha = p.sha256;
                self.switched_at = seq;
                self.ctl.set_model_info(p.info.clone());
                if p.rollback {
                    vec![PushStatus::RolledBack {
                        model: p.info,
                        seq,
                        reason: "asked by the host".into(),
                    }]
                } else {
                    vec![PushStatus::Switched { model: p.info, seq }]
                }
            }
            Outcome::Failed { reason, seq } => {
                if !p.rollback {
                    self.store().discard(&p.path);
                }
                let reason = format!("{} failed on its first frames: {reason}", p.info.bundle);
                match seq {
                    Some(seq) => vec![PushStatus::RolledBack {
                        model: self.info(),
                        seq,
                        reason,
                    }],
                    None => vec![PushStatus::Refused { reason }],
                }
            }
        }
    }
}

/// One frame of mid grey through the whole model, as the board will run it.
fn test_frame(model: &Model, threads: usize) -> Result<(), svit_runtime::RunError> {
    let mut st = model.new_state(threads)?;
    let s = model.config().image_size;
    let mut input = model.prepare(&vec![128u8; s * s * 3], s, s, Vec::new())?;
    model.run_prepared(&mut st, &mut input, &model.default_options())?;
    Ok(())
}
