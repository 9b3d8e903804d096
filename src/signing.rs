//! `[signing]`: the Ed25519 key that signs export manifests and lake digests,
//! and `tooltrail keys` to make one and show its public half.
//!
//! The private key is a PKCS#8 PEM file (`openssl genpkey -algorithm ed25519`
//! writes the same format). `tooltrail up` without `signing.key_file` creates
//! `<data-dir>/signing-key.pem` (mode 0600) on first start and reuses it, so a
//! newcomer's lake is signed from the first digest; production sets the path.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tooltrail_schemas::signing::{Keyring, PublicKey, Signer};

/// `[signing]`: the key tooltrail signs with.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// PKCS#8 PEM file with the Ed25519 private key. Unset: `up` creates and
    /// uses `<data-dir>/signing-key.pem`; other commands need `--key`.
    pub key_file: Option<PathBuf>,
    /// Public keys (SPKI PEM files) of earlier keys whose signatures still
    /// verify, for key rotation. The current key is always trusted.
    pub trusted_public_keys: Vec<PathBuf>,
}

/// The file `up` creates when no key is configured.
pub const DEFAULT_KEY_FILE: &str = "signing-key.pem";

/// Reads the configured key; `None` when none is configured.
pub fn load(config: &SigningConfig) -> anyhow::Result<Option<Signer>> {
    config.key_file.as_deref().map(read_private).transpose()
}

/// Reads the configured key, or the one `up` keeps in the data directory,
/// creating it there on first start.
pub fn load_or_create(config: &SigningConfig, data_dir: &Path) -> anyhow::Result<Signer> {
    if let Some(signer) = load(config)? {
        return Ok(signer);
    }
    let path = data_dir.join(DEFAULT_KEY_FILE);
    if path.exists() {
        return read_private(&path);
    }
    let signer = generate();
    write_private(&path, &signer)?;
    tracing::warn!(
        path = %path.display(),
        key_id = %signer.key_id(),
        "no signing.key_file configured: created a signing key; back it up, and publish its public key (GET /v1/keys) to auditors"
    );
    Ok(signer)
}

/// The public keys a verifier trusts: `--public-key` files if given, else the
/// configured key's public half and `signing.trusted_public_keys`.
pub fn keyring(config: &SigningConfig, public_keys: &[PathBuf]) -> anyhow::Result<Keyring> {
    let mut keys = Vec::new();
    if public_keys.is_empty() {
        if let Some(signer) = load(config)? {
            keys.push(signer.public_key().clone());
        }
        for path in &config.trusted_public_keys {
            keys.push(read_public(path)?);
        }
    } else {
        for path in public_keys {
            keys.push(read_public(path)?);
        }
    }
    if keys.is_empty() {
        anyhow::bail!(
            "no public key to verify with: pass --public-key FILE (the PEM from GET /v1/keys) or set signing.key_file"
        );
    }
    Ok(Keyring::new(keys))
}

pub fn read_private(path: &Path) -> anyhow::Result<Signer> {
    let pem = fs::read_to_string(path)
        .with_context(|| format!("reading signing key {}", path.display()))?;
    Signer::from_pem(&pem).with_context(|| format!("signing key {}", path.display()))
}

pub fn read_public(path: &Path) -> anyhow::Result<PublicKey> {
    let pem = fs::read_to_string(path)
        .with_context(|| format!("reading public key {}", path.display()))?;
    PublicKey::from_pem(&pem).with_context(|| format!("public key {}", path.display()))
}

fn generate() -> Signer {
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    Signer::from_seed(seed)
}

/// Writes a private key readable by its owner only; refuses to overwrite.
fn write_private(path: &Path, signer: &Signer) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(signer.to_pem().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a new Ed25519 signing key (PKCS#8 PEM, mode 0600) and print its public key.
    Generate {
        /// Where to write the private key; refuses to overwrite.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the public key (SPKI PEM) of a private key, for auditors.
    Public {
        /// The private key; default `signing.key_file`.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

pub fn run(command: KeysCommand, config: &SigningConfig) -> anyhow::Result<()> {
    let signer = match command {
        KeysCommand::Generate { out } => {
            let signer = generate();
            write_private(&out, &signer)?;
            eprintln!("wrote {} (key id {})", out.display(), signer.key_id());
            signer
        }
        KeysCommand::Public { key } => match key {
            Some(path) => read_private(&path)?,
            None => load(config)?.context("no key: pass --key FILE or set signing.key_file")?,
        },
    };
    print!("{}", signer.public_key().to_pem());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_creates_a_key_once_and_reuses_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = SigningConfig::default();
        let first = load_or_create(&config, dir.path()).expect("creates");
        let second = load_or_create(&config, dir.path()).expect("reuses");
        assert_eq!(first.key_id(), second.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(DEFAULT_KEY_FILE))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_verifier_without_any_key_is_told_what_to_pass() {
        let err = keyring(&SigningConfig::default(), &[]).unwrap_err();
        assert!(err.to_string().contains("--public-key"), "{err}");
    }
}
