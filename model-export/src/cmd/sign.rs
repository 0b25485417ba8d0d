//! `svit-export keygen` and `svit-export sign`: Ed25519 keys and bundle signatures
//! (`svit_runtime::signature` says what is signed and how a board checks it).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use svit_runtime::manifest::Manifest;
use svit_runtime::signature::{self, SecretKey};

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Writes PREFIX.key (secret: keep it off the boards) and PREFIX.pub (give it to boards:
    /// `svit-edge run --trust PREFIX.pub`).
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

pub fn keygen(a: KeygenArgs) -> Result<()> {
    let (key_path, pub_path) = (a.out.with_extension("key"), a.out.with_extension("pub"));
    for p in [&key_path, &pub_path] {
        if p.exists() && !a.force {
            bail!("{} exists: not replacing a key (--force to)", p.display());
        }
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).context("reading the OS's random source")?;
    let key = SecretKey::from_seed(seed);
    write_secret(&key_path, &key.to_text())?;
    std::fs::write(&pub_path, key.public().to_text())
        .with_context(|| format!("writing {}", pub_path.display()))?;
    println!(
        "key {}: {} (secret), {} (public)",
        key.public().id,
        key_path.display(),
        pub_path.display()
    );
    Ok(())
}

/// The secret key file, readable by its owner only.
fn write_secret(path: &std::path::Path, text: &str) -> Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// The secret key (`svit-export keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Also (re)pack BUNDLE.tar with the signature in it.
    #[arg(long)]
    pub tar: bool,
    /// A bundle directory (sign before packing: a `.tar` is packed from the directory).
    pub bundle: PathBuf,
}

pub fn sign(a: SignArgs) -> Result<()> {
    if !a.bundle.is_dir() {
        bail!(
            "{} is not a bundle directory: sign the directory, then pack it (sign --tar)",
            a.bundle.display()
        );
    }
    // Only a bundle that verifies gets signed: the signature vouches for what is there.
    let manifest = Manifest::load_verified(&a.bundle)
        .with_context(|| format!("verifying {} before signing it", a.bundle.display()))?;
    let key = SecretKey::read(&a.key)?;
    let id = signature::sign(&a.bundle, &key)?;
    println!("signed {} with key {id}", a.bundle.display());
    if a.tar {
        let tar = a.bundle.with_extension("tar");
        svit_export::export::bundle::pack(&a.bundle, &manifest, &tar)?;
        println!("packed {}", tar.display());
    }
    Ok(())
}
