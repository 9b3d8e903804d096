//! `manifest.json`: what an export holds and how it was made, signed.
//!
//! A persisted format: `manifest_version: 1`, changes additive only (readers
//! ignore fields they do not know). The signature is detached, in
//! `manifest.json.sig`: the raw 64-byte Ed25519 signature over the exact
//! bytes of `manifest.json`, so stock OpenSSL checks it:
//!
//! ```text
//! openssl pkeyutl -verify -pubin -inkey tooltrail.pub.pem -rawin \
//!     -in manifest.json -sigfile manifest.json.sig
//! ```
//!
//! [`verify_dir`] checks the signature (and that its key is trusted), every
//! part's presence, size, SHA-256 and row count, the totals, and that the
//! directory holds nothing else; it reports every problem, not the first.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tooltrail_schemas::signing::{Keyring, Signer};

use super::parts::{count_rows, hash_file, sync_dir};
use super::{ExportError, ExportFormat, MANIFEST, MANIFEST_SIG};

/// The version this code writes.
pub const MANIFEST_VERSION: u32 = 1;
/// The only signature algorithm.
pub const ALGORITHM: &str = "ed25519";

/// The manifest of one export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub export_id: String,
    pub requested_by: RequestedBy,
    pub scope: Scope,
    /// The `where` predicate as requested; null for none.
    pub predicate: Option<String>,
    pub format: ExportFormat,
    /// The SQL that produced the rows, as recorded in `query_audit`.
    pub sql: String,
    /// Lowercase hex SHA-256 of `sql`'s UTF-8 bytes.
    pub sql_sha256: String,
    /// The `query_id` of the query's `query_audit` records.
    pub query_id: String,
    pub tooltrail_version: String,
    /// Every lake file the query's plan scanned, sorted by path.
    pub source_files: Vec<SourceFile>,
    /// The part files, in order.
    pub parts: Vec<Part>,
    pub totals: Totals,
    /// When the export was asked for, started and finished (RFC 3339, UTC).
    pub requested_at: String,
    pub started_at: String,
    pub finished_at: String,
    /// The signing key: 16 hex digits of the SHA-256 of the raw public key.
    pub key_id: String,
    /// Always `ed25519`.
    pub signature_algorithm: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedBy {
    /// The token's name (`local-operator` for the CLI).
    pub principal: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub tenant_id: String,
    /// Inclusive, RFC 3339 UTC.
    pub from: String,
    /// Exclusive.
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Relative to the lake root, `/`-separated.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The file name in the export directory.
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub parts: u64,
    pub rows: u64,
    pub bytes: u64,
}

impl Totals {
    pub fn of(parts: &[Part]) -> Totals {
        Totals {
            parts: parts.len() as u64,
            rows: parts.iter().map(|p| p.rows).sum(),
            bytes: parts.iter().map(|p| p.bytes).sum(),
        }
    }
}

impl Manifest {
    /// The exact bytes written to `manifest.json` (pretty JSON, one trailing
    /// newline) and signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Writes `manifest.json.sig`, then `manifest.json` (the mark of a
    /// finished export), each under a temporary name, fsynced, renamed.
    pub fn write_signed(&self, dir: &Path, signer: &Signer) -> Result<(), ExportError> {
        let bytes = self.to_bytes();
        let signature = signer.sign(&bytes);
        write_atomic(dir, MANIFEST_SIG, &signature)?;
        write_atomic(dir, MANIFEST, &bytes)?;
        sync_dir(dir)
    }

    /// Reads and parses `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest, String> {
        let path = dir.join(MANIFEST);
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ExportError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut file = fs::File::create(&tmp).map_err(ExportError::io(&tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(ExportError::io(&tmp))?;
    fs::rename(&tmp, &path).map_err(ExportError::io(&path))
}

/// One thing wrong with an export directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    ManifestMissing,
    ManifestUnreadable(String),
    UnsupportedVersion(u32),
    SignatureMissing,
    SignatureInvalid {
        key_id: String,
        problem: String,
    },
    UntrustedKey {
        key_id: String,
        trusted: Vec<String>,
    },
    UnsafeName(String),
    PartMissing(String),
    PartBytes {
        name: String,
        expected: u64,
        actual: u64,
    },
    PartSha256 {
        name: String,
        expected: String,
        actual: String,
    },
    PartRows {
        name: String,
        expected: u64,
        actual: u64,
    },
    PartUnreadable {
        name: String,
        problem: String,
    },
    Totals {
        field: &'static str,
        manifest: u64,
        parts: u64,
    },
    ExtraFile(String),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::ManifestMissing => write!(f, "{MANIFEST} is missing"),
            Finding::ManifestUnreadable(e) => write!(f, "{MANIFEST} is not a valid manifest: {e}"),
            Finding::UnsupportedVersion(v) => write!(
                f,
                "{MANIFEST} has manifest_version {v}; this verifier knows version {MANIFEST_VERSION}"
            ),
            Finding::SignatureMissing => {
                write!(f, "{MANIFEST_SIG} is missing: the manifest is not signed")
            }
            Finding::SignatureInvalid { key_id, problem } => write!(
                f,
                "signature: {MANIFEST_SIG} does not verify {MANIFEST} with key {key_id} ({problem}): \
                 the manifest was changed after it was signed, or signed with another key"
            ),
            Finding::UntrustedKey { key_id, trusted } => write!(
                f,
                "signature: {MANIFEST} names key {key_id}, which is not trusted (trusted: {})",
                trusted.join(", ")
            ),
            Finding::UnsafeName(name) => {
                write!(
                    f,
                    "part {name:?}: not a plain file name in the export directory"
                )
            }
            Finding::PartMissing(name) => write!(f, "part {name}: missing"),
            Finding::PartBytes {
                name,
                expected,
                actual,
            } => write!(
                f,
                "part {name}: {actual} bytes, the manifest says {expected}"
            ),
            Finding::PartSha256 {
                name,
                expected,
                actual,
            } => write!(
                f,
                "part {name}: sha256 {actual}, the manifest says {expected}"
            ),
            Finding::PartRows {
                name,
                expected,
                actual,
            } => write!(
                f,
                "part {name}: {actual} rows, the manifest says {expected}"
            ),
            Finding::PartUnreadable { name, problem } => write!(f, "part {name}: {problem}"),
            Finding::Totals {
                field,
                manifest,
                parts,
            } => write!(
                f,
                "totals.{field} is {manifest}, but the parts listed add up to {parts}"
            ),
            Finding::ExtraFile(name) => {
                write!(f, "{name}: not listed in the manifest")
            }
        }
    }
}

/// What [`verify_dir`] found.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The manifest, when it could be read (signed or not).
    pub manifest: Option<Manifest>,
    pub findings: Vec<Finding>,
}

impl Verification {
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Checks the export in `dir` against `keyring`. Blocking: reads every part.
pub fn verify_dir(dir: &Path, keyring: &Keyring) -> Verification {
    let mut findings = Vec::new();
    let bytes = match fs::read(dir.join(MANIFEST)) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            findings.push(Finding::ManifestMissing);
            None
        }
        Err(e) => {
            findings.push(Finding::ManifestUnreadable(e.to_string()));
            None
        }
    };
    let manifest = bytes.as_deref().and_then(|b| {
        serde_json::from_slice::<Manifest>(b)
            .map_err(|e| findings.push(Finding::ManifestUnreadable(e.to_string())))
            .ok()
    });
    if let Some(bytes) = &bytes {
        check_signature(dir, bytes, manifest.as_ref(), keyring, &mut findings);
    }
    if let Some(m) = &manifest {
        if m.manifest_version != MANIFEST_VERSION {
            findings.push(Finding::UnsupportedVersion(m.manifest_version));
        }
        for part in &m.parts {
            check_part(dir, m.format, part, &mut findings);
        }
        let sum = Totals::of(&m.parts);
        for (field, manifest, parts) in [
            ("parts", m.totals.parts, sum.parts),
            ("rows", m.totals.rows, sum.rows),
            ("bytes", m.totals.bytes, sum.bytes),
        ] {
            if manifest != parts {
                findings.push(Finding::Totals {
                    field,
                    manifest,
                    parts,
                });
            }
        }
    }
    let mut expected: BTreeSet<String> = [MANIFEST.to_string(), MANIFEST_SIG.to_string()].into();
    if let Some(m) = &manifest {
        expected.extend(m.parts.iter().map(|p| p.name.clone()));
    }
    match fs::read_dir(dir) {
        Ok(entries) => {
            let mut extra: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !expected.contains(name))
                .collect();
            extra.sort();
            findings.extend(extra.into_iter().map(Finding::ExtraFile));
        }
        Err(e) => findings.push(Finding::ManifestUnreadable(format!(
            "cannot list {}: {e}",
            dir.display()
        ))),
    }
    Verification { manifest, findings }
}

fn check_signature(
    dir: &Path,
    bytes: &[u8],
    manifest: Option<&Manifest>,
    keyring: &Keyring,
    findings: &mut Vec<Finding>,
) {
    let signature = match fs::read(dir.join(MANIFEST_SIG)) {
        Ok(signature) => signature,
        Err(_) => {
            findings.push(Finding::SignatureMissing);
            return;
        }
    };
    let trusted = || {
        keyring
            .keys()
            .iter()
            .map(|k| k.key_id().to_string())
            .collect()
    };
    match manifest {
        Some(m) => match keyring.get(&m.key_id) {
            None => findings.push(Finding::UntrustedKey {
                key_id: m.key_id.clone(),
                trusted: trusted(),
            }),
            Some(key) => {
                if let Err(e) = key.verify(bytes, &signature) {
                    findings.push(Finding::SignatureInvalid {
                        key_id: m.key_id.clone(),
                        problem: e.to_string(),
                    });
                }
            }
        },
        // Unparseable: no key id to go by; any trusted key will do.
        None => {
            if !keyring
                .keys()
                .iter()
                .any(|k| k.verify(bytes, &signature).is_ok())
            {
                findings.push(Finding::SignatureInvalid {
                    key_id: "(any trusted)".into(),
                    problem: "no trusted key verifies it".into(),
                });
            }
        }
    }
}

fn check_part(dir: &Path, format: ExportFormat, part: &Part, findings: &mut Vec<Finding>) {
    let name = &part.name;
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name != MANIFEST
        && name != MANIFEST_SIG;
    if !plain {
        findings.push(Finding::UnsafeName(name.clone()));
        return;
    }
    let path = dir.join(name);
    if !path.is_file() {
        findings.push(Finding::PartMissing(name.clone()));
        return;
    }
    match hash_file(&path) {
        Ok((sha256, bytes)) => {
            if bytes != part.bytes {
                findings.push(Finding::PartBytes {
                    name: name.clone(),
                    expected: part.bytes,
                    actual: bytes,
                });
            }
            if sha256 != part.sha256 {
                findings.push(Finding::PartSha256 {
                    name: name.clone(),
                    expected: part.sha256.clone(),
                    actual: sha256,
                });
            }
        }
        Err(e) => findings.push(Finding::PartUnreadable {
            name: name.clone(),
            problem: e.to_string(),
        }),
    }
    match count_rows(&path, format) {
        Ok(rows) if rows != part.rows => findings.push(Finding::PartRows {
            name: name.clone(),
            expected: part.rows,
            actual: rows,
        }),
        Ok(_) => {}
        Err(problem) => findings.push(Finding::PartUnreadable {
            name: name.clone(),
            problem,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tooltrail_schemas::signing::PublicKey;

    fn signer(seed: u8) -> Signer {
        Signer::from_seed([seed; 32])
    }

    fn keyring(signers: &[&Signer]) -> Keyring {
        Keyring::new(signers.iter().map(|s| s.public_key().clone()).collect())
    }

    /// An ndjson export of two parts (2 and 1 rows), signed by `signer`.
    fn export(dir: &Path, signer: &Signer) -> Manifest {
        let mut parts = Vec::new();
        for (name, text) in [
            ("part-00000.ndjson", "{\"a\":1}\n{\"a\":2}\n"),
            ("part-00001.ndjson", "{\"a\":3}\n"),
        ] {
            fs::write(dir.join(name), text).unwrap();
            let (sha256, bytes) = hash_file(&dir.join(name)).unwrap();
            parts.push(Part {
                name: name.into(),
                rows: text.lines().count() as u64,
                bytes,
                sha256,
            });
        }
        let manifest = Manifest {
            manifest_version: MANIFEST_VERSION,
            export_id: "0190-test".into(),
            requested_by: RequestedBy {
                principal: "aud".into(),
                role: "auditor".into(),
            },
            scope: Scope {
                tenant_id: "acme".into(),
                from: "2025-01-01T00:00:00.000000Z".into(),
                to: "2025-02-01T00:00:00.000000Z".into(),
            },
            predicate: Some("status >= 400".into()),
            format: ExportFormat::Ndjson,
            sql: "SELECT 1".into(),
            sql_sha256: "x".into(),
            query_id: "q".into(),
            tooltrail_version: "0.1.0".into(),
            source_files: vec![SourceFile {
                path: "events/dt=2025-01-01/hour=00/part-1-0.parquet".into(),
                bytes: 10,
                sha256: "00".repeat(32),
            }],
            totals: Totals::of(&parts),
            parts,
            requested_at: "2025-02-01T00:00:00.000000Z".into(),
            started_at: "2025-02-01T00:00:00.000000Z".into(),
            finished_at: "2025-02-01T00:00:01.000000Z".into(),
            key_id: signer.key_id().to_string(),
            signature_algorithm: ALGORITHM.into(),
        };
        manifest.write_signed(dir, signer).unwrap();
        manifest
    }

    #[test]
    fn a_written_manifest_reads_back_and_verifies_clean() {
        let dir = tempfile::tempdir().unwrap();
        let key = signer(1);
        let written = export(dir.path(), &key);
        assert_eq!(Manifest::read(dir.path()).unwrap(), written);
        let v = verify_dir(dir.path(), &keyring(&[&key]));
        assert!(v.is_ok(), "{:?}", v.findings);
        // The signature is over the exact bytes, as openssl sees them.
        let bytes = fs::read(dir.path().join(MANIFEST)).unwrap();
        let sig = fs::read(dir.path().join(MANIFEST_SIG)).unwrap();
        let public = PublicKey::from_pem(&key.public_key().to_pem()).unwrap();
        public.verify(&bytes, &sig).unwrap();
    }

    #[test]
    fn a_flipped_byte_names_the_part_and_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let key = signer(1);
        let m = export(dir.path(), &key);
        fs::write(dir.path().join("part-00001.ndjson"), "{\"a\":4}\n").unwrap();
        let v = verify_dir(dir.path(), &keyring(&[&key]));
        let actual = hash_file(&dir.path().join("part-00001.ndjson")).unwrap().0;
        assert_eq!(
            v.findings,
            [Finding::PartSha256 {
                name: "part-00001.ndjson".into(),
                expected: m.parts[1].sha256.clone(),
                actual,
            }]
        );
        assert!(
            v.findings[0]
                .to_string()
                .starts_with("part part-00001.ndjson: sha256 ")
        );
    }

    #[test]
    fn wrong_rows_missing_parts_extra_files_and_bad_totals_are_each_reported() {
        let dir = tempfile::tempdir().unwrap();
        let key = signer(1);
        let mut m = export(dir.path(), &key);
        // A manifest that lies about rows and totals, properly signed.
        m.parts[0].rows = 5;
        m.totals.rows = 99;
        m.write_signed(dir.path(), &key).unwrap();
        fs::remove_file(dir.path().join("part-00001.ndjson")).unwrap();
        fs::write(dir.path().join("notes.txt"), "hi").unwrap();
        let v = verify_dir(dir.path(), &keyring(&[&key]));
        let text: Vec<String> = v.findings.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            text,
            [
                "part part-00000.ndjson: 2 rows, the manifest says 5",
                "part part-00001.ndjson: missing",
                "totals.rows is 99, but the parts listed add up to 6",
                "notes.txt: not listed in the manifest",
            ]
        );
    }

    #[test]
    fn an_edited_manifest_or_an_untrusted_key_fails_the_signature() {
        let dir = tempfile::tempdir().unwrap();
        let key = signer(1);
        export(dir.path(), &key);
        let path = dir.path().join(MANIFEST);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("status >= 400", "status >= 500")).unwrap();
        let v = verify_dir(dir.path(), &keyring(&[&key]));
        assert!(
            matches!(&v.findings[..], [Finding::SignatureInvalid { key_id, .. }] if key_id == key.key_id().as_str()),
            "{:?}",
            v.findings
        );

        let other = signer(2);
        export(dir.path(), &other);
        let v = verify_dir(dir.path(), &keyring(&[&key]));
        assert_eq!(
            v.findings,
            [Finding::UntrustedKey {
                key_id: other.key_id().to_string(),
                trusted: vec![key.key_id().to_string()],
            }]
        );

        fs::remove_file(dir.path().join(MANIFEST_SIG)).unwrap();
        let v = verify_dir(dir.path(), &keyring(&[&other]));
        assert_eq!(v.findings, [Finding::SignatureMissing]);
    }

    #[test]
    fn part_names_cannot_reach_outside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let key = signer(1);
        let mut m = export(dir.path(), &key);
        m.parts[1].name = "../part-00001.ndjson".into();
        m.write_signed(dir.path(), &key).unwrap();
        let v = verify_dir(dir.path(), &keyring(&[&key]));
        assert!(
            v.findings
                .contains(&Finding::UnsafeName("../part-00001.ndjson".into()))
        );
        assert!(
            v.findings
                .contains(&Finding::ExtraFile("part-00001.ndjson".into()))
        );
    }
}
