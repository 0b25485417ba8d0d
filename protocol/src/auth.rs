//! The pre-shared key: reading a key file, and the 32-byte Noise PSK derived from it
//! (HKDF-SHA256, RustCrypto's `hkdf`, so key files of any length of at least 16 bytes work).
//! What the key does is in `secure` and `session`.

use sha2::{Digest, Sha256};

/// The Noise PSK for a key file's bytes: HKDF-SHA256 with no salt and this protocol's label.
pub fn psk(key: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, key)
        .expand(b"svit-edge noise psk v1", &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

/// 16 random bytes for a hello nonce (the OS generator; a time-derived value if it is absent).
pub fn nonce() -> [u8; 16] {
    use std::io::Read;
    let mut n = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut n))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        n.copy_from_slice(&Sha256::digest(t.to_le_bytes())[..16]);
    }
    n
}

/// Reads a key file: its bytes, trailing whitespace removed. Errors name the file.
pub fn read_key(path: &std::path::Path) -> std::io::Result<std::vec::Vec<u8>> {
    let mut k = std::fs::read(path).map_err(|e| {
        std::io::Error::new(e.kind(), std::format!("key file {}: {e}", path.display()))
    })?;
    while k.last().is_some_and(|b| b.is_ascii_whitespace()) {
        k.pop();
    }
    if k.len() < 16 {
        return Err(std::io::Error::other(std::format!(
            "key file {}: key shorter than 16 bytes",
            path.display()
        )));
    }
    Ok(k)
}

/// Reads one key per board from `dir` (`svit-host listen --keys DIR`): each file's name is the
/// board's name (its hello's device), each file a key as [`read_key`] reads it.
pub fn read_keys(
    dir: &std::path::Path,
) -> std::io::Result<std::collections::BTreeMap<std::string::String, std::vec::Vec<u8>>> {
    let named = |e: std::io::Error| {
        std::io::Error::new(e.kind(), std::format!("key folder {}: {e}", dir.display()))
    };
    let mut keys = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(named)? {
        let path = entry.map_err(named)?.path();
        if !path.is_file() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        keys.insert(name.into(), read_key(&path)?);
    }
    if keys.is_empty() {
        return Err(std::io::Error::other(std::format!(
            "key folder {}: no key files (one per board, named as the board)",
            dir.display()
        )));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5869_case_1_and_distinct_keys() {
        // RFC 5869 test case 1 checks the construction; our PSK is the same with no salt.
        let ikm = [0x0bu8; 22];
        let salt: [u8; 13] = core::array::from_fn(|i| i as u8);
        let info: [u8; 10] = core::array::from_fn(|i| 0xf0 + i as u8);
        let mut okm = [0u8; 42];
        hkdf::Hkdf::<Sha256>::new(Some(&salt), &ikm)
            .expand(&info, &mut okm)
            .unwrap();
        let hex: alloc::string::String = okm.iter().map(|b| alloc::format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
        assert_ne!(psk(b"0123456789abcdef"), psk(b"0123456789abcdeg"));
    }
}
