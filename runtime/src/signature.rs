//! Signed bundles: an Ed25519 signature (RustCrypto's `ed25519-dalek`) over the bundle's
//! `manifest.json`, which pins every other file by SHA-256, kept beside it in `signature.json`.
//! `svit-export keygen` and `svit-export sign` make them; a board given trusted public keys
//! (`svit-edge run --trust FILE`) refuses a bundle that is unsigned, signed by another key, or
//! changed after signing, and names the key it expected.
//!
//! Key files are one line of text: `svit-ed25519-public <64 hex digits>` (the `.pub`, safe to
//! copy to boards) and `svit-ed25519-secret <64 hex digits>` (the `.key`, kept off them). A key's
//! id is the first 16 hex digits of the SHA-256 of its public half.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::BundleError;
use crate::files::BundleFiles;
use crate::manifest::{sha256_hex, MANIFEST};

/// The bundle file holding the signature.
pub const SIGNATURE: &str = "signature.json";

const PUBLIC_TAG: &str = "svit-ed25519-public";
const SECRET_TAG: &str = "svit-ed25519-secret";

#[derive(Serialize, Deserialize)]
struct SignatureFile {
    algorithm: String,
    key_id: String,
    /// 128 hex digits.
    signature: String,
}

/// A public key a board trusts.
#[derive(Clone, Debug)]
pub struct PublicKey {
    key: VerifyingKey,
    pub id: String,
}

/// A signing key (`svit-export sign`).
pub struct SecretKey(SigningKey);

impl PublicKey {
    fn new(key: VerifyingKey) -> PublicKey {
        PublicKey {
            id: sha256_hex(key.as_bytes())[..16].to_string(),
            key,
        }
    }

    /// Reads a `.pub` file (`svit-export keygen`).
    pub fn read(path: &Path) -> Result<PublicKey, BundleError> {
        let bytes = read_key_file(path, PUBLIC_TAG)?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey::new)
            .map_err(|_| key_error(path, "is not an Ed25519 public key"))
    }

    /// The `.pub` file's text.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_TAG} {}\n", hex(self.key.as_bytes()))
    }
}

impl SecretKey {
    /// The key whose 32 secret bytes are `seed` (from the OS's random source: `keygen`).
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// Reads a `.key` file.
    pub fn read(path: &Path) -> Result<SecretKey, BundleError> {
        read_key_file(path, SECRET_TAG).map(SecretKey::from_seed)
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::new(self.0.verifying_key())
    }

    /// The `.key` file's text.
    pub fn to_text(&self) -> String {
        format!("{SECRET_TAG} {}\n", hex(self.0.as_bytes()))
    }
}

/// Signs the bundle directory `dir` (its manifest as it is now) with `key`: writes
/// `dir/signature.json`. Returns the key's id.
pub fn sign(dir: &Path, key: &SecretKey) -> Result<String, BundleError> {
    let manifest_path = dir.join(MANIFEST);
    let manifest = std::fs::read(&manifest_path).map_err(|source| BundleError::Io {
        path: manifest_path,
        source,
    })?;
    let id = key.public().id;
    let file = SignatureFile {
        algorithm: "ed25519".into(),
        key_id: id.clone(),
        signature: hex(&key.0.sign(&manifest).to_bytes()),
    };
    let path = dir.join(SIGNATURE);
    let json = serde_json::to_vec_pretty(&file).map_err(|e| BundleError::Manifest {
        path: path.clone(),
        problem: e.to_string(),
    })?;
    std::fs::write(&path, json).map_err(|source| BundleError::Io { path, source })?;
    Ok(id)
}

/// What a bundle's signature says, once checked against the keys a board trusts.
#[derive(Debug, PartialEq)]
pub enum Trust {
    /// Signed by this trusted key, and unchanged since.
    Signed { key_id: String },
    /// No keys to check against: accepted as it is (`signed_by` the key it names, if any).
    Unchecked { signed_by: Option<String> },
}

/// Checks the bundle's signature against `trusted`. With no trusted keys every bundle is
/// accepted (`Trust::Unchecked`); with some, only one signed by one of them and unchanged.
pub fn check(files: &BundleFiles, trusted: &[PublicKey]) -> Result<Trust, BundleError> {
    let path = files.display(SIGNATURE);
    let expected = || {
        trusted
            .iter()
            .map(|k| k.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sig = match files.read(SIGNATURE) {
        Ok(bytes) => Some(parse(&bytes).map_err(|problem| BundleError::Manifest {
            path: path.clone(),
            problem,
        })?),
        Err(BundleError::Missing { .. }) => None,
        Err(e) => return Err(e),
    };
    if trusted.is_empty() {
        return Ok(Trust::Unchecked {
            signed_by: sig.map(|s| s.key_id),
        });
    }
    let Some(sig) = sig else {
        return Err(BundleError::Signature(format!(
            "{}: the bundle is not signed, and this board trusts only key {}: sign it with \
             `svit-export sign --key KEY.key BUNDLE`",
            files.display(MANIFEST).display(),
            expected()
        )));
    };
    let Some(key) = trusted.iter().find(|k| k.id == sig.key_id) else {
        return Err(BundleError::Signature(format!(
            "{}: signed by key {}, but this board trusts only key {}",
            path.display(),
            sig.key_id,
            expected()
        )));
    };
    let bytes = unhex::<64>(&sig.signature).ok_or_else(|| BundleError::Manifest {
        path: path.clone(),
        problem: "signature is not 128 hex digits".into(),
    })?;
    let manifest = files.read(MANIFEST)?;
    key.key
        .verify(&manifest, &Signature::from_bytes(&bytes))
        .map_err(|_| {
            BundleError::Signature(format!(
                "{}: the signature by key {} does not match the manifest: the bundle was \
                 changed after it was signed",
                path.display(),
                key.id
            ))
        })?;
    Ok(Trust::Signed {
        key_id: key.id.clone(),
    })
}

/// `check` of the bundle at `bundle` (a directory or `.tar`) against the public key files
/// `trust` (`--trust`): what `svit-edge run` and `doctor` both do.
pub fn check_bundle(bundle: &Path, trust: &[std::path::PathBuf]) -> Result<Trust, BundleError> {
    let trusted = trust
        .iter()
        .map(|p| PublicKey::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    check(&BundleFiles::open(bundle)?, &trusted)
}

fn parse(bytes: &[u8]) -> Result<SignatureFile, String> {
    let s: SignatureFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if s.algorithm != "ed25519" {
        return Err(format!("algorithm {:?}, expected \"ed25519\"", s.algorithm));
    }
    Ok(s)
}

fn read_key_file(path: &Path, tag: &str) -> Result<[u8; 32], BundleError> {
    let text = std::fs::read_to_string(path).map_err(|source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut words = text.split_whitespace();
    match (words.next(), words.next().and_then(unhex::<32>)) {
        (Some(t), Some(bytes)) if t == tag => Ok(bytes),
        (Some(t), _) if t == PUBLIC_TAG || t == SECRET_TAG => Err(key_error(
            path,
            &format!("is a {t} key file; {tag} expected here"),
        )),
        _ => Err(key_error(
            path,
            &format!("is not a key file (`{tag} <64 hex digits>`, from svit-export keygen)"),
        )),
    }
}

fn key_error(path: &Path, problem: &str) -> BundleError {
    BundleError::Signature(format!("{}: {problem}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("svit-sig-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(MANIFEST), b"{\"files\": {}}").unwrap();
        d
    }

    #[test]
    fn a_signed_bundle_passes_and_any_change_or_other_key_is_named() {
        let d = bundle("sign");
        let (a, b) = (SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32]));
        let id = sign(&d, &a).unwrap();
        let files = BundleFiles::open(&d).unwrap();
        assert_eq!(
            check(&files, &[a.public()]).unwrap(),
            Trust::Signed { key_id: id.clone() }
        );
        // Another board's key: refused, naming both.
        let e = check(&files, &[b.public()]).unwrap_err().to_string();
        assert!(e.contains(&id) && e.contains(&b.public().id), "{e}");
        // No keys: accepted, saying who signed it.
        assert_eq!(
            check(&files, &[]).unwrap(),
            Trust::Unchecked {
                signed_by: Some(id.clone())
            }
        );
        // A flipped byte in the manifest.
        std::fs::write(d.join(MANIFEST), b"{\"files\": {}} ").unwrap();
        let e = check(&files, &[a.public()]).unwrap_err().to_string();
        assert!(e.contains("changed after it was signed"), "{e}");
        // Unsigned.
        std::fs::remove_file(d.join(SIGNATURE)).unwrap();
        let e = check(&files, &[a.public()]).unwrap_err().to_string();
        assert!(e.contains("not signed") && e.contains(&id), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn key_files_round_trip_and_the_wrong_half_is_named() {
        let d = bundle("keys");
        let k = SecretKey::from_seed([7; 32]);
        std::fs::write(d.join("k.key"), k.to_text()).unwrap();
        std::fs::write(d.join("k.pub"), k.public().to_text()).unwrap();
        assert_eq!(PublicKey::read(&d.join("k.pub")).unwrap().id, k.public().id);
        assert_eq!(
            SecretKey::read(&d.join("k.key")).unwrap().public().id,
            k.public().id
        );
        let e = PublicKey::read(&d.join("k.key")).unwrap_err().to_string();
        assert!(e.contains("svit-ed25519-secret key file"), "{e}");
        std::fs::write(d.join("junk.pub"), "hello").unwrap();
        let e = PublicKey::read(&d.join("junk.pub"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a key file"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
