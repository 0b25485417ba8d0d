//! Pre-shared-key authentication for the hello exchange: each side proves it holds the key by
//! answering the other's random nonce with HMAC-SHA256(key, role label || nonce). This
//! authenticates peers (only the owner's host gets frames and may send control); it does not
//! encrypt the stream.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Role;

/// HMAC-SHA256 (RFC 2104), RustCrypto's `hmac`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(msg);
    m.finalize().into_bytes().into()
}

fn label(role: &Role) -> &'static [u8] {
    match role {
        Role::Edge => b"svit-edge auth v1",
        Role::Host => b"svit-host auth v1",
    }
}

/// The MAC that `prover` sends in answer to the peer's `nonce`.
pub fn mac(key: &[u8], prover: Role, nonce: &[u8; 16]) -> [u8; 32] {
    let mut msg = [0u8; 17 + 16];
    let l = label(&prover);
    msg[..l.len()].copy_from_slice(l);
    msg[l.len()..l.len() + 16].copy_from_slice(nonce);
    hmac_sha256(key, &msg[..l.len() + 16])
}

/// 16 random bytes for a hello nonce (the OS generator; a time-derived value if it is absent).
#[cfg(feature = "std")]
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
#[cfg(feature = "std")]
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

/// Constant-time check of a received MAC.
pub fn verify(key: &[u8], prover: Role, nonce: &[u8; 16], got: &[u8; 32]) -> bool {
    mac(key, prover, nonce).ct_eq(got).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        let m = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: alloc::string::String = m.iter().map(|b| alloc::format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn wrong_key_role_or_nonce_fails() {
        let n = [7u8; 16];
        let m = mac(b"secret", Role::Edge, &n);
        assert!(verify(b"secret", Role::Edge, &n, &m));
        assert!(!verify(b"Secret", Role::Edge, &n, &m));
        assert!(!verify(b"secret", Role::Host, &n, &m));
        assert!(!verify(b"secret", Role::Edge, &[8u8; 16], &m));
    }
}
