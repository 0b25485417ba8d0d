//! The bundles a board keeps on disk for pushes (`svit-edge run --store DIR`): the one running,
//! the one before it (for rollback) and one being received. Nothing else stays, so disk use is
//! bounded by three bundles.
//!
//! `DIR/state.json` names the current and previous bundle (a store file, or the `--bundle` the
//! board started with); `DIR/staging.part` and `DIR/staging.json` hold a transfer under way, so
//! it resumes after a reconnect or a restart of either side.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const STATE: &str = "state.json";
const PART: &str = "staging.part";
const PART_META: &str = "staging.json";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("bundle store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bundle store {path}: unreadable state ({problem}); remove it to start afresh")]
    State { path: PathBuf, problem: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct State {
    current: Option<PathBuf>,
    previous: Option<PathBuf>,
}

/// What `staging.part` is a piece of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PartMeta {
    sha256: String,
    size: u64,
}

pub struct Store {
    dir: PathBuf,
    state: State,
}

impl Store {
    /// Opens (creating) the store directory.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(STATE);
        let state = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::State {
                path: path.clone(),
                problem: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(Store {
            dir: dir.to_path_buf(),
            state,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bundle the last switch put in place, if any.
    pub fn current(&self) -> Option<&Path> {
        self.state.current.as_deref()
    }

    /// The bundle that ran before it.
    pub fn previous(&self) -> Option<&Path> {
        self.state.previous.as_deref()
    }

    /// Bytes free for the store's files.
    pub fn free_bytes(&self) -> Result<u64, StoreError> {
        let c = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes())
            .map_err(|_| io(&self.dir)(std::io::Error::other("a NUL byte in the store's path")))?;
        // SAFETY: a NUL-terminated path and a zeroed statvfs for the kernel to fill.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(io(&self.dir)(std::io::Error::last_os_error()));
        }
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }

    /// Opens the staging file for an offer: what it already holds of the same offer is kept
    /// (the transfer resumes), anything else is thrown away. Returns the file, positioned at
    /// its end, and how many bytes it holds.
    pub fn stage(&self, sha256: &[u8; 32], size: u64) -> Result<(File, u64), StoreError> {
        let meta = PartMeta {
            sha256: hex(sha256),
            size,
        };
        let (part, meta_path) = (self.dir.join(PART), self.dir.join(PART_META));
        let same = fs::read(&meta_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<PartMeta>(&b).ok())
            .is_some_and(|m| m == meta);
        if !same {
            let _ = fs::remove_file(&part);
            write_atomic(&meta_path, &serde_json::to_vec(&meta).unwrap_or_default())?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(io(&part))?;
        let have = f.metadata().map_err(io(&part))?.len();
        if have > size {
            // Not this offer's bytes after all: start again.
            f.set_len(0).map_err(io(&part))?;
            return Ok((f, 0));
        }
        Ok((f, have))
    }

    /// The complete staging file's SHA-256, then (if it is the offer's) the file moved to its
    /// own name in the store. A mismatch removes it.
    pub fn finish(&self, sha256: &[u8; 32]) -> Result<Result<PathBuf, String>, StoreError> {
        let part = self.dir.join(PART);
        let mut f = File::open(&part).map_err(io(&part))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(io(&part))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let got: [u8; 32] = h.finalize().into();
        let _ = fs::remove_file(self.dir.join(PART_META));
        if &got != sha256 {
            let _ = fs::remove_file(&part);
            return Ok(Err(format!(
                "the bundle arrived altered: its SHA-256 is {}, the offer's {}",
                hex(&got),
                hex(sha256)
            )));
        }
        let to = self.dir.join(format!("{}.tar", &hex(sha256)[..16]));
        fs::rename(&part, &to).map_err(io(&to))?;
        Ok(Ok(to))
    }

    /// After a switch to `new`: the bundle that was running (`was`) becomes the previous one,
    /// and store files that are neither are removed.
    pub fn switched(&mut self, new: &Path, was: &Path) -> Result<(), StoreError> {
        self.state = State {
            current: Some(new.to_path_buf()),
            previous: Some(was.to_path_buf()),
        };
        self.save()?;
        self.prune();
        Ok(())
    }

    /// Removes a bundle file of the store that is neither current nor previous.
    pub fn discard(&self, path: &Path) {
        if path.starts_with(&self.dir)
            && Some(path) != self.current()
            && Some(path) != self.previous()
        {
            let _ = fs::remove_file(path);
        }
    }

    fn prune(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "tar") {
                self.discard(&p);
            }
        }
    }

    fn save(&self) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(&self.state).unwrap_or_default();
        write_atomic(&self.dir.join(STATE), &bytes)
    }
}

/// Written under a temporary name, synced, then renamed: a power cut leaves the old file or the
/// new one, never half of one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("svit-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_transfer_resumes_and_only_its_own_bytes_are_kept() {
        let dir = tmp("resume");
        let store = Store::open(&dir).unwrap();
        let data = b"0123456789abcdef".repeat(10);
        let id = sha(&data);
        let (mut f, have) = store.stage(&id, data.len() as u64).unwrap();
        assert_eq!(have, 0);
        f.write_all(&data[..70]).unwrap();
        drop(f);
        // The same offer again (a reconnect): resumes at 70.
        let (mut f, have) = Store::open(&dir)
            .unwrap()
            .stage(&id, data.len() as u64)
            .unwrap();
        assert_eq!(have, 70);
        f.write_all(&data[70..]).unwrap();
        drop(f);
        let path = store.finish(&id).unwrap().unwrap();
        assert_eq!(fs::read(&path).unwrap(), data);
        // Another offer starts from zero.
        let (_, have) = store.stage(&sha(b"other"), 5).unwrap();
        assert_eq!(have, 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn altered_bytes_are_refused_and_removed() {
        let dir = tmp("altered");
        let store = Store::open(&dir).unwrap();
        let data = b"bundle bytes".to_vec();
        let id = sha(&data);
        let (mut f, _) = store.stage(&id, data.len() as u64).unwrap();
        let mut bad = data.clone();
        bad[3] ^= 1;
        f.write_all(&bad).unwrap();
        drop(f);
        let why = store.finish(&id).unwrap().unwrap_err();
        assert!(why.contains("altered") && why.contains(&hex(&id)), "{why}");
        assert!(!dir.join(PART).exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn at_most_current_and_previous_stay() {
        let dir = tmp("bounded");
        let mut store = Store::open(&dir).unwrap();
        let first = PathBuf::from("/opt/first");
        let mut was = first.clone();
        for i in 0..3u8 {
            let data = vec![i; 10];
            let id = sha(&data);
            let (mut f, _) = store.stage(&id, 10).unwrap();
            f.write_all(&data).unwrap();
            drop(f);
            let new = store.finish(&id).unwrap().unwrap();
            store.switched(&new, &was).unwrap();
            was = new;
        }
        let tars = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "tar"))
            .count();
        assert_eq!(tars, 2);
        let again = Store::open(&dir).unwrap();
        assert_eq!(again.current(), Some(was.as_path()));
        assert!(again.previous().is_some_and(|p| p != first && p.exists()));
        assert!(again.free_bytes().unwrap() > 0);
        let _ = fs::remove_dir_all(&dir);
    }
}
