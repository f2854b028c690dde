//! Why a TLS interface's files cannot serve.

use std::fmt;
use std::path::PathBuf;

use super::ClientCerts;

/// A certificate, key or CA file that cannot serve, found when it is loaded; each names the
/// file and the fault, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// A file cannot be read (missing, not readable) or is not valid PEM: its path and why.
    Unreadable(PathBuf, String),
    /// The certificate file holds no certificate (`BEGIN CERTIFICATE`): its path.
    NoCertificate(PathBuf),
    /// The certificate cannot be used (not a valid X.509 certificate): its file and why.
    BadCertificate(PathBuf, String),
    /// The key file holds no private key (PKCS#8, PKCS#1 or SEC1, in PEM): its path.
    NoPrivateKey(PathBuf),
    /// The private key cannot be used (malformed, or of an algorithm not supported): its file
    /// and why.
    BadKey(PathBuf, String),
    /// The private key is not the certificate's.
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// The CA file cannot check client certificates (no certificate in it, or one that is
    /// not a valid trust anchor): its path and why.
    BadCaFile(PathBuf, String),
    /// Client certificates are asked for (the policy) with no CA file to check them against.
    NoCaFile(ClientCerts),
    /// The cryptographic provider cannot be set up (no random numbers): why.
    Crypto(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Unreadable(path, why) => write!(f, "cannot read {path:?}: {why}"),
            TlsError::NoCertificate(path) => {
                write!(f, "{path:?} holds no certificate (PEM \"CERTIFICATE\")")
            }
            TlsError::BadCertificate(path, why) => {
                write!(f, "the certificate in {path:?} cannot be used: {why}")
            }
            TlsError::NoPrivateKey(path) => write!(
                f,
                "{path:?} holds no private key (PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \
                 \"EC PRIVATE KEY\")"
            ),
            TlsError::BadKey(path, why) => {
                write!(f, "the private key in {path:?} cannot be used: {why}")
            }
            TlsError::KeyMismatch { key, cert } => write!(
                f,
                "the private key in {key:?} does not match the certificate in {cert:?}"
            ),
            TlsError::BadCaFile(path, why) => write!(f, "CA file {path:?} cannot be used: {why}"),
            TlsError::NoCaFile(policy) => write!(
                f,
                "cert_reqs {policy} needs a CA file (ca_certs) to check client certificates against"
            ),
            TlsError::Crypto(why) => write!(f, "cannot set up TLS: {why}"),
        }
    }
}

impl std::error::Error for TlsError {}
