//! The audit trail's signing key: Ed25519 (ring), kept as PEM files an
//! operator can read with OpenSSL: `audit.key` (PKCS#8, `PRIVATE KEY`, mode
//! 0600) and `audit.pub` (SubjectPublicKeyInfo, `PUBLIC KEY`). A key is named
//! in records by its fingerprint, `SHA256:` and the hex of its raw public key's digest.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use sha2::{Digest, Sha256};

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// Why a key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file holds no key of the kind expected.
    #[error("{path}: not an Ed25519 {what} in PEM ({why})")]
    Format {
        /// The file.
        path: PathBuf,
        /// "private key" or "public key".
        what: &'static str,
        /// Why.
        why: String,
    },
    /// No OS random source.
    #[error("no OS random source to make a key")]
    Random,
}

/// A key that signs checkpoints.
pub struct Signer {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("key", &self.fingerprint()).finish()
    }
}

impl Signer {
    /// Reads `audit.key`.
    pub fn load(path: &Path) -> Result<Signer, KeyError> {
        let text = std::fs::read(path).map_err(|error| KeyError::Io { path: path.to_owned(), error })?;
        let format = |why: String| KeyError::Format { path: path.to_owned(), what: "private key", why };
        let der = PrivatePkcs8KeyDer::from_pem_slice(&text).map_err(|e| format(e.to_string()))?;
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der()).map_err(|e| format(e.to_string()))?;
        Ok(Signer { pair })
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(raw)
    }

    /// The fingerprint records name it by.
    pub fn fingerprint(&self) -> String {
        self.public().fingerprint()
    }
}

/// A key that verifies checkpoints.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Reads `audit.pub`.
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        let text = std::fs::read(path).map_err(|error| KeyError::Io { path: path.to_owned(), error })?;
        let format = |why: String| KeyError::Format { path: path.to_owned(), what: "public key", why };
        let der = SubjectPublicKeyInfoDer::from_pem_slice(&text).map_err(|e| format(e.to_string()))?;
        let raw = der
            .strip_prefix(&SPKI_PREFIX[..])
            .filter(|raw| raw.len() == 32)
            .ok_or_else(|| format("not an Ed25519 key".into()))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(raw);
        Ok(PublicKey(key))
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0).verify(message, signature).is_ok()
    }

    /// `SHA256:` and the hex of the raw key's digest.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", hex::encode(Sha256::digest(self.0)))
    }
}

/// Writes a new key pair: `dir/audit.key` (0600, never overwritten) and `dir/audit.pub`.
pub fn generate(dir: &Path) -> Result<(PathBuf, PathBuf, String), KeyError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| KeyError::Random)?;
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    let (key, public) = (dir.join("audit.key"), dir.join("audit.pub"));
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
        move |error| KeyError::Io { path: path.to_owned(), error }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&key).map_err(io(&key))?;
    file.write_all(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes()).map_err(io(&key))?;
    std::fs::write(&public, pem("PUBLIC KEY", &spki)).map_err(io(&public))?;
    let mut raw = [0u8; 32];
    raw.copy_from_slice(pair.public_key().as_ref());
    Ok((key, public, PublicKey(raw).fingerprint()))
}

/// `der` as a PEM block.
fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_signs_and_its_public_half_verifies() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (key, public, fingerprint) = generate(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let signer = Signer::load(&key).unwrap_or_else(|e| panic!("{e}"));
        let verifier = PublicKey::load(&public).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(signer.fingerprint(), fingerprint);
        assert_eq!(verifier.fingerprint(), fingerprint);
        let signature = signer.sign(b"hello");
        assert!(verifier.verifies(b"hello", &signature));
        assert!(!verifier.verifies(b"hellO", &signature));
        // Never overwritten; the wrong kind of file is named.
        assert!(generate(dir.path()).is_err());
        assert!(matches!(Signer::load(&public), Err(KeyError::Format { .. })));
        assert!(matches!(PublicKey::load(&key), Err(KeyError::Format { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            assert_eq!(mode, 0o600);
        }
    }
}
