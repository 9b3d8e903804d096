//! Ed25519 signing for what tooltrail asks auditors to trust: export
//! manifests and the lake's digest chain.
//!
//! Keys travel as PEM: the private key as PKCS#8 (`openssl genpkey -algorithm
//! ed25519` writes the same), the public key as SubjectPublicKeyInfo, so an
//! outside auditor can check a signature with stock OpenSSL:
//!
//! ```text
//! openssl pkeyutl -verify -pubin -inkey tooltrail.pub.pem -rawin \
//!     -in manifest.json -sigfile manifest.json.sig
//! ```
//!
//! A signature is the raw 64 bytes over the exact bytes of the signed file,
//! stored beside it as `<file>.sig`. A key is named by its [`KeyId`]: the
//! first 16 hex digits of the SHA-256 of the raw 32-byte public key.
//!
//! No IO here: callers read the PEM text and the files.
//!
//! ```
//! use tooltrail_schemas::signing::{Signer, PublicKey};
//! let signer = Signer::from_seed([7; 32]);
//! let sig = signer.sign(b"manifest");
//! let public = PublicKey::from_pem(&signer.public_key().to_pem()).unwrap();
//! assert_eq!(public.key_id(), signer.key_id());
//! public.verify(b"manifest", &sig).unwrap();
//! assert!(public.verify(b"manifest!", &sig).is_err());
//! ```

use std::fmt;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// Length of a signature file: the raw Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// The suffix of a detached signature file: `manifest.json` → `manifest.json.sig`.
pub const SIGNATURE_SUFFIX: &str = ".sig";

/// The name of a key: 16 hex digits of the SHA-256 of the raw public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with a key or a signature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("not an Ed25519 private key in PKCS#8 PEM: {0}")]
    PrivateKey(String),
    #[error("not an Ed25519 public key in PEM: {0}")]
    PublicKey(String),
    #[error("signature is {len} bytes, expected {SIGNATURE_LEN}")]
    SignatureLength { len: usize },
    #[error("signature does not match (key {key_id})")]
    Mismatch { key_id: String },
}

/// A private key that signs.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    public: PublicKey,
}

impl Signer {
    /// A key from a 32-byte seed (for key generation and tests).
    pub fn from_seed(seed: [u8; 32]) -> Signer {
        let key = SigningKey::from_bytes(&seed);
        let public = PublicKey::new(key.verifying_key());
        Signer { key, public }
    }

    /// Parses a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Signer, SigningError> {
        let key = SigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| SigningError::PrivateKey(e.to_string()))?;
        let public = PublicKey::new(key.verifying_key());
        Ok(Signer { key, public })
    }

    /// The private key as PKCS#8 PEM, for writing a generated key to a file.
    pub fn to_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an Ed25519 key encodes as PKCS#8")
            .to_string()
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub fn key_id(&self) -> &KeyId {
        &self.public.key_id
    }

    /// Signs `message`: the raw 64-byte signature.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.public.key_id)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// A public key that verifies.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    key_id: KeyId,
}

impl PublicKey {
    fn new(key: VerifyingKey) -> PublicKey {
        let digest = Sha256::digest(key.as_bytes());
        let key_id = KeyId(hex::encode(&digest[..8]));
        PublicKey { key, key_id }
    }

    /// Parses a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<PublicKey, SigningError> {
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| SigningError::PublicKey(e.to_string()))?;
        Ok(PublicKey::new(key))
    }

    /// The key as SubjectPublicKeyInfo PEM, as `GET /v1/keys` publishes it.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("an Ed25519 key encodes as SPKI")
    }

    /// The raw 32-byte key, hex-encoded.
    pub fn to_hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Checks a raw 64-byte signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SigningError> {
        let bytes: [u8; SIGNATURE_LEN] =
            signature
                .try_into()
                .map_err(|_| SigningError::SignatureLength {
                    len: signature.len(),
                })?;
        self.key
            .verify(message, &Signature::from_bytes(&bytes))
            .map_err(|_| SigningError::Mismatch {
                key_id: self.key_id.to_string(),
            })
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("key_id", &self.key_id)
            .finish()
    }
}

/// A set of trusted public keys (key rotation: old digests stay verifiable).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<PublicKey>,
}

impl Keyring {
    pub fn new(keys: Vec<PublicKey>) -> Keyring {
        Keyring { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    pub fn get(&self, key_id: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.key_id.as_str() == key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_round_trips_through_pem() {
        let signer = Signer::from_seed([1; 32]);
        let again = Signer::from_pem(&signer.to_pem()).expect("own PEM parses");
        assert_eq!(again.key_id(), signer.key_id());
        let public = PublicKey::from_pem(&signer.public_key().to_pem()).expect("SPKI parses");
        let sig = again.sign(b"digest");
        public.verify(b"digest", &sig).expect("verifies");
    }

    #[test]
    fn reads_a_key_openssl_wrote() {
        // `openssl genpkey -algorithm ed25519` output.
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEICxaHDhJOo5QbT/Qve9k16gDS4Gp5EtbwTxGLT1lnN38\n\
                   -----END PRIVATE KEY-----\n";
        let signer = Signer::from_pem(pem).expect("openssl's PKCS#8 parses");
        assert_eq!(signer.key_id().as_str().len(), 16);
    }

    #[test]
    fn names_what_is_wrong() {
        assert!(matches!(
            Signer::from_pem("not a key"),
            Err(SigningError::PrivateKey(_))
        ));
        let public = Signer::from_seed([2; 32]).public_key().clone();
        assert_eq!(
            public.verify(b"x", &[0; 10]),
            Err(SigningError::SignatureLength { len: 10 })
        );
        let other = Signer::from_seed([3; 32]).sign(b"x");
        assert!(matches!(
            public.verify(b"x", &other),
            Err(SigningError::Mismatch { .. })
        ));
    }
}
