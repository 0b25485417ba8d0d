//! Where a bundle's bytes come from: a directory, or a `.tar` of one (a single file to copy to a
//! board). Both are read the same way, by relative name, and errors name `bundle.tar:entry`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::BundleError;

/// The manifest's name in a bundle.
pub const MANIFEST: &str = "manifest.json";

/// A tar larger than this is refused rather than read into memory.
pub const MAX_TAR: u64 = 2 << 30;

pub enum BundleFiles {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        entries: HashMap<String, Vec<u8>>,
    },
}

impl BundleFiles {
    /// A directory as it is; a file is read as a tar (entries may sit under one top folder).
    pub fn open(path: &Path) -> Result<Self, BundleError> {
        let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => BundleError::Missing {
                path: path.join(MANIFEST),
            },
            _ => BundleError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        if meta.is_dir() {
            return Ok(BundleFiles::Dir(path.to_path_buf()));
        }
        let bad = |problem: String| BundleError::Manifest {
            path: path.to_path_buf(),
            problem,
        };
        if meta.len() > MAX_TAR {
            return Err(bad(format!(
                "{} bytes is too large for a bundle",
                meta.len()
            )));
        }
        let f = std::fs::File::open(path).map_err(|source| BundleError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut ar = tar::Archive::new(f);
        let mut entries = HashMap::new();
        let not_tar = |e: std::io::Error| bad(format!("not a readable tar archive: {e}"));
        for e in ar.entries().map_err(not_tar)? {
            let mut e = e.map_err(not_tar)?;
            if !e.header().entry_type().is_file() {
                continue;
            }
            let name = e.path().map_err(not_tar)?.to_string_lossy().into_owned();
            let mut bytes = Vec::with_capacity(e.size().min(MAX_TAR) as usize);
            e.read_to_end(&mut bytes).map_err(not_tar)?;
            entries.insert(name.trim_start_matches("./").to_string(), bytes);
        }
        // Accept `demo/manifest.json` as well as `manifest.json`: strip one shared top folder.
        if !entries.contains_key(MANIFEST) {
            let tops: std::collections::HashSet<&str> = entries
                .keys()
                .filter_map(|k| k.split_once('/').map(|p| p.0))
                .collect();
            if let (1, Some(top)) = (tops.len(), tops.iter().next().map(|t| t.to_string())) {
                entries = entries
                    .into_iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix(&format!("{top}/"))
                            .map(|k| (k.to_string(), v))
                    })
                    .collect();
            }
        }
        Ok(BundleFiles::Tar {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// How to name `rel` in an error: a path, or `bundle.tar:rel`.
    pub fn display(&self, rel: &str) -> PathBuf {
        match self {
            BundleFiles::Dir(d) => d.join(rel),
            BundleFiles::Tar { path, .. } => PathBuf::from(format!("{}:{rel}", path.display())),
        }
    }

    pub fn read(&self, rel: &str) -> Result<Vec<u8>, BundleError> {
        match self {
            BundleFiles::Dir(d) => read(&d.join(rel)),
            BundleFiles::Tar { entries, .. } => {
                entries
                    .get(rel)
                    .cloned()
                    .ok_or_else(|| BundleError::Missing {
                        path: self.display(rel),
                    })
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, BundleError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            BundleError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            BundleError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}
