//! What one TLS interface needs, read from its files: its certificate chain and private key,
//! and whether (and against which CAs) clients' certificates are checked.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::version::{TLS12, TLS13};
use rustls::{InconsistentKeys, RootCertStore, ServerConfig};

use super::{tickets, TlsError};

/// The sessions a TLS interface remembers for resumption by session ID, for clients that do
/// not take tickets: a few hundred bytes each, about 1 MiB in all (as nginx's
/// `ssl_session_cache shared:SSL:1m`, which holds about 4000).
const SESSION_CACHE_SIZE: usize = 4096;

/// The only application protocol offered (ALPN): the server speaks HTTP/1.1 alone.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Whether a TLS interface asks clients for a certificate: gunicorn's `--cert-reqs` (`none`,
/// `optional`, `required`). Rocket asks optionally when given a CA file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// No certificate is asked for (a CA file, if given, is not read).
    None,
    /// A certificate is asked for; a client may send none, but one it sends must be valid
    /// (signed by a CA of the CA file), or the handshake fails.
    Optional,
    /// A valid certificate is required: a client without one fails the handshake.
    Required,
}

impl fmt::Display for ClientCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientCerts::None => "none",
            ClientCerts::Optional => "optional",
            ClientCerts::Required => "required",
        })
    }
}

/// What one TLS interface serves with: the rustls configuration its files make, and the
/// files' paths, so that a restart can read them again ([`TlsSettings::reload`]).
#[derive(Debug)]
pub(crate) struct TlsSettings {
    /// The certificate chain (PEM, the server's certificate first).
    cert: PathBuf,
    /// The private key of the certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    key: PathBuf,
    /// The CAs that client certificates are checked against (PEM), if given.
    ca_certs: Option<PathBuf>,
    /// Whether clients are asked for a certificate.
    policy: ClientCerts,
    /// TLS 1.2 and 1.3, ALPN `http/1.1`, resumption by session ID and by tickets: shared by
    /// every connection of the interface (and so is its session cache).
    config: Arc<ServerConfig>,
}

impl TlsSettings {
    /// Reads the certificate chain, the key and (unless `policy` is `None`) the CA file, and
    /// checks that they make a working configuration: the key must be the certificate's.
    pub(crate) fn load(
        cert: &Path,
        key: &Path,
        ca_certs: Option<&Path>,
        policy: ClientCerts,
    ) -> Result<TlsSettings, TlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let verifier = client_verifier(ca_certs, policy, &provider)?;
        let chain = read_chain(cert)?;
        let private_key = read_key(key)?;
        let builder = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&TLS13, &TLS12])
            .map_err(|e| TlsError::Crypto(e.to_string()))?;
        let builder = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, private_key)
            .map_err(|e| pair_error(e, cert, key))?;
        resume_sessions(&mut config, &ticket_context(cert, key, ca_certs, policy))?;
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        // The server's order of cipher suites (rustls', strongest first) wins over the client's.
        config.ignore_client_order = true;
        Ok(TlsSettings {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            ca_certs: ca_certs.map(Path::to_path_buf),
            policy,
            config: Arc::new(config),
        })
    }

    /// The same files read again (after SIGHUP: a renewed certificate); on error the caller
    /// keeps serving with these settings.
    pub(crate) fn reload(&self) -> Result<TlsSettings, TlsError> {
        let ca_certs = self.ca_certs.as_deref();
        TlsSettings::load(&self.cert, &self.key, ca_certs, self.policy)
    }

    /// The rustls configuration of the interface's connections.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

/// Turns session resumption on: a session cache (for resumption by session ID) and
/// stateless tickets, whose keys rotate every 6 hours and are the same in every worker
/// process of a master and across restarts, for interfaces of the same `context` (see
/// [`tickets`]).
fn resume_sessions(config: &mut ServerConfig, context: &[u8]) -> Result<(), TlsError> {
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = tickets::ticketer(context)?;
    Ok(())
}

/// What makes an interface's security, which its tickets are bound to: the files it serves
/// with, and the client certificates it asks for and trusts.
fn ticket_context(
    cert: &Path,
    key: &Path,
    ca_certs: Option<&Path>,
    policy: ClientCerts,
) -> Vec<u8> {
    let ca_certs = ca_certs.filter(|_| policy != ClientCerts::None);
    let mut context = policy.to_string().into_bytes();
    for path in [Some(cert), Some(key), ca_certs].into_iter().flatten() {
        context.push(0);
        context.extend_from_slice(path.as_os_str().as_encoded_bytes());
    }
    context
}

/// How client certificates are checked under `policy`: `None` when none is asked for.
fn client_verifier(
    ca_certs: Option<&Path>,
    policy: ClientCerts,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    let ca_certs = match (policy, ca_certs) {
        (ClientCerts::None, _) => return Ok(None),
        (_, None) => return Err(TlsError::NoCaFile(policy)),
        (_, Some(path)) => path,
    };
    let bad = |why: String| TlsError::BadCaFile(ca_certs.to_path_buf(), why);
    let mut roots = RootCertStore::empty();
    for ca in read_certs(ca_certs)? {
        roots.add(ca).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("it holds no certificate".into()));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = match policy {
        ClientCerts::Optional => builder.allow_unauthenticated(),
        _ => builder,
    };
    builder.build().map(Some).map_err(|e| bad(e.to_string()))
}

/// The certificates of `path`, in order: a chain, the server's certificate first.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = read_certs(path)?;
    match chain.is_empty() {
        true => Err(TlsError::NoCertificate(path.to_path_buf())),
        false => Ok(chain),
    }
}

/// Every certificate of the PEM file `path` (none, if it holds none).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |e| unreadable(path, e);
    CertificateDer::pem_file_iter(path)
        .map_err(fail)?
        .collect::<Result<_, _>>()
        .map_err(fail)
}

/// The first private key of the PEM file `path`.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey(path.to_path_buf()),
        e => unreadable(path, e),
    })
}

/// A file that cannot be read as PEM; the system's reason alone for I/O errors.
fn unreadable(path: &Path, e: pem::Error) -> TlsError {
    let why = match e {
        pem::Error::Io(e) => e.to_string(),
        e => e.to_string(),
    };
    TlsError::Unreadable(path.to_path_buf(), why)
}

/// Which file is at fault when a certificate chain and a key make no configuration.
fn pair_error(e: rustls::Error, cert: &Path, key: &Path) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsError::KeyMismatch {
            key: key.to_path_buf(),
            cert: cert.to_path_buf(),
        },
        rustls::Error::InvalidCertificate(why) => {
            TlsError::BadCertificate(cert.to_path_buf(), why.to_string())
        }
        e => TlsError::BadKey(key.to_path_buf(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{certs, connect_tls, tls_client};
    use rustls::crypto::aws_lc_rs::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    };
    use rustls::HandshakeKind;
    use x509_cert::der::pem::{encode_string, LineEnding};

    /// How a test writes a private key.
    #[derive(Debug, Clone, Copy)]
    enum Encoding {
        /// `PRIVATE KEY`, as rcgen writes it.
        Pkcs8,
        /// `RSA PRIVATE KEY` (openssl's `-traditional`).
        Pkcs1,
        /// `EC PRIVATE KEY` (openssl's `ec`).
        Sec1,
    }

    /// Writes a certificate for localhost with a new key of `alg`, the key encoded as given,
    /// as `NAME.pem` and `NAME-key.pem`.
    fn pair(
        dir: &Path,
        name: &str,
        alg: &'static rcgen::SignatureAlgorithm,
        encoding: Encoding,
    ) -> certs::CertFiles {
        let key = rcgen::KeyPair::generate_for(alg).expect("a key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let cert = params.self_signed(&key).expect("a certificate");
        let files = certs::CertFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, encode_key(&key.serialize_der(), encoding)).unwrap();
        files
    }

    /// A PKCS#8 key (`der`) in PEM, re-encoded as `encoding`.
    fn encode_key(der: &[u8], encoding: Encoding) -> String {
        let (label, bytes) = match encoding {
            Encoding::Pkcs8 => ("PRIVATE KEY", der.to_vec()),
            Encoding::Pkcs1 => {
                let info = pkcs8::PrivateKeyInfoRef::try_from(der).expect("PKCS#8");
                ("RSA PRIVATE KEY", info.private_key.as_bytes().to_vec())
            }
            Encoding::Sec1 => {
                use ::aws_lc_rs::encoding::AsDer;
                use ::aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der).unwrap();
                let sec1 = pair.private_key().as_der().expect("SEC1");
                ("EC PRIVATE KEY", sec1.as_ref().to_vec())
            }
        };
        encode_string(label, LineEnding::LF, &bytes).unwrap()
    }

    #[test]
    fn rsa_and_ecdsa_keys_load_in_every_encoding() {
        let dir = certs::scratch_dir("tls-encodings");
        let cases = [
            (&rcgen::PKCS_ECDSA_P256_SHA256, Encoding::Pkcs8),
            (&rcgen::PKCS_ECDSA_P256_SHA256, Encoding::Sec1),
            (&rcgen::PKCS_RSA_SHA256, Encoding::Pkcs8),
            (&rcgen::PKCS_RSA_SHA256, Encoding::Pkcs1),
        ];
        for (at, (alg, encoding)) in cases.into_iter().enumerate() {
            let files = pair(&dir, &format!("pair-{at}"), alg, encoding);
            let key = std::fs::read_to_string(&files.key).unwrap();
            let label = match encoding {
                Encoding::Pkcs8 => "BEGIN PRIVATE KEY",
                Encoding::Pkcs1 => "BEGIN RSA PRIVATE KEY",
                Encoding::Sec1 => "BEGIN EC PRIVATE KEY",
            };
            assert!(key.contains(label), "{encoding:?}: {key}");
            let loaded = TlsSettings::load(&files.cert, &files.key, None, ClientCerts::None);
            assert!(loaded.is_ok(), "{encoding:?}: {loaded:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_that_cannot_serve_are_errors_naming_them() {
        let dir = certs::scratch_dir("tls-errors");
        let good = certs::self_signed(&dir);
        let other = pair(
            &dir,
            "other",
            &rcgen::PKCS_ECDSA_P256_SHA256,
            Encoding::Pkcs8,
        );
        let missing = dir.join("missing.pem");
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let (cert, key) = (&good.cert, &good.key);
        let none = ClientCerts::None;
        let table: Vec<(Files<'_>, TlsError)> = vec![
            ((&missing, key, None, none), unreadable_error(&missing)),
            ((cert, &missing, None, none), unreadable_error(&missing)),
            ((key, key, None, none), TlsError::NoCertificate(key.clone())),
            (
                (cert, cert, None, none),
                TlsError::NoPrivateKey(cert.clone()),
            ),
            (
                (&empty, key, None, none),
                TlsError::NoCertificate(empty.clone()),
            ),
            (
                (cert, &other.key, None, none),
                TlsError::KeyMismatch {
                    key: other.key.clone(),
                    cert: cert.clone(),
                },
            ),
            (
                (cert, key, None, ClientCerts::Optional),
                TlsError::NoCaFile(ClientCerts::Optional),
            ),
            (
                (cert, key, None, ClientCerts::Required),
                TlsError::NoCaFile(ClientCerts::Required),
            ),
            (
                (cert, key, Some(&empty), ClientCerts::Required),
                TlsError::BadCaFile(empty.clone(), "it holds no certificate".into()),
            ),
            (
                (cert, key, Some(&missing), ClientCerts::Optional),
                unreadable_error(&missing),
            ),
        ];
        for ((cert, key, ca, policy), expected) in table {
            let got = TlsSettings::load(cert, key, ca, policy).unwrap_err();
            assert_eq!(got, expected);
            let line = got.to_string();
            assert_eq!(line.lines().count(), 1, "{line}");
        }
        let bad_pem = TlsSettings::load(&garbage, key, None, none).unwrap_err();
        assert!(
            matches!(bad_pem, TlsError::Unreadable(ref p, _) if *p == garbage),
            "{bad_pem}"
        );
        let line = TlsSettings::load(cert, &other.key, None, none)
            .unwrap_err()
            .to_string();
        assert!(
            line.contains("other-key.pem") && line.contains("server.pem"),
            "{line}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What [`TlsSettings::load`] is given: certificate, key, CA file and policy.
    type Files<'a> = (&'a Path, &'a Path, Option<&'a Path>, ClientCerts);

    /// What loading a file that does not exist says.
    fn unreadable_error(path: &Path) -> TlsError {
        let why = std::fs::File::open(path).map(drop).unwrap_err();
        TlsError::Unreadable(path.to_path_buf(), why.to_string())
    }

    #[test]
    fn without_client_certificates_a_ca_file_is_not_read() {
        let dir = certs::scratch_dir("tls-no-client-certs");
        let server = certs::self_signed(&dir);
        let pki = certs::client_pki(&dir);
        let missing = dir.join("missing-ca.pem");
        let settings =
            TlsSettings::load(&server.cert, &server.key, Some(&missing), ClientCerts::None);
        let settings = settings.expect("the CA file is ignored");
        let client = tls_client(&server.cert, Some(&pki.client), TLS13_AES_128_GCM_SHA256);
        let conn = connect_tls(&client, settings.server_config()).expect("a handshake");
        assert!(
            conn.peer_certificates().is_none(),
            "no certificate was asked for"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn client_certificates_are_checked_as_the_policy_says() {
        let dir = certs::scratch_dir("tls-policies");
        let server = certs::self_signed(&dir);
        let pki = certs::client_pki(&dir);
        let stranger = certs::client_pki(&certs::scratch_dir("tls-policies-stranger"));
        let suite = TLS13_AES_128_GCM_SHA256;
        let cases = [
            (ClientCerts::Optional, None, true),
            (ClientCerts::Optional, Some(&pki.client), true),
            (ClientCerts::Optional, Some(&stranger.client), false),
            (ClientCerts::Required, None, false),
            (ClientCerts::Required, Some(&pki.client), true),
            (ClientCerts::Required, Some(&stranger.client), false),
        ];
        for (policy, sent, accepted) in cases {
            let settings = TlsSettings::load(&server.cert, &server.key, Some(&pki.ca), policy);
            let settings = settings.unwrap();
            let client = tls_client(&server.cert, sent, suite);
            let conn = connect_tls(&client, settings.server_config());
            assert_eq!(conn.is_ok(), accepted, "{policy} {:?}", conn.err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(stranger.ca.parent().unwrap()).unwrap();
    }

    #[test]
    fn sessions_resume_and_alpn_is_http11() {
        let dir = certs::scratch_dir("tls-resume");
        let server = certs::self_signed(&dir);
        let settings = TlsSettings::load(&server.cert, &server.key, None, ClientCerts::None);
        let config = settings.unwrap().server_config();
        let by_id = {
            let client = tls_client(&server.cert, None, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
            let mut tls12 = (*client).clone();
            tls12.resumption = rustls::client::Resumption::default()
                .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
            Arc::new(tls12)
        };
        let tickets = tls_client(&server.cert, None, TLS13_AES_128_GCM_SHA256);
        for client in [by_id, tickets] {
            let first = connect_tls(&client, config.clone()).unwrap();
            assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
            assert_eq!(first.alpn_protocol(), Some(&b"http/1.1"[..]));
            let again = connect_tls(&client, config.clone()).unwrap();
            assert_eq!(again.handshake_kind(), Some(HandshakeKind::Resumed));
        }
        let mut h2_only = (*tls_client(&server.cert, None, TLS13_AES_128_GCM_SHA256)).clone();
        h2_only.alpn_protocols = vec![b"h2".to_vec()];
        let refused = connect_tls(&Arc::new(h2_only), config).unwrap_err();
        assert_eq!(refused, rustls::Error::NoApplicationProtocol);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_ticket_resumes_after_a_reload() {
        let dir = certs::scratch_dir("tls-resume-reload");
        let server = certs::self_signed(&dir);
        let settings = TlsSettings::load(&server.cert, &server.key, None, ClientCerts::None);
        let settings = settings.unwrap();
        let client = tls_client(&server.cert, None, TLS13_AES_128_GCM_SHA256);
        let first = connect_tls(&client, settings.server_config()).unwrap();
        assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
        let reloaded = settings.reload().unwrap().server_config();
        let again = connect_tls(&client, reloaded).unwrap();
        assert_eq!(again.handshake_kind(), Some(HandshakeKind::Resumed));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_ticket_does_not_resume_where_a_client_certificate_is_required() {
        let dir = certs::scratch_dir("tls-resume-policy");
        let server = certs::self_signed(&dir);
        let pki = certs::client_pki(&dir);
        let load = |policy| {
            let ca = Some(pki.ca.as_path());
            let settings = TlsSettings::load(&server.cert, &server.key, ca, policy);
            settings.unwrap().server_config()
        };
        let client = tls_client(&server.cert, None, TLS13_AES_128_GCM_SHA256);
        let optional = connect_tls(&client, load(ClientCerts::Optional)).unwrap();
        assert_eq!(optional.handshake_kind(), Some(HandshakeKind::Full));
        let again = connect_tls(&client, load(ClientCerts::Optional)).unwrap();
        assert_eq!(again.handshake_kind(), Some(HandshakeKind::Resumed));
        let required = connect_tls(&client, load(ClientCerts::Required));
        assert!(required.is_err(), "resumed without a certificate");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reload_reads_the_files_again() {
        let dir = certs::scratch_dir("tls-reload");
        let server = certs::self_signed(&dir);
        let settings = TlsSettings::load(&server.cert, &server.key, None, ClientCerts::None);
        let settings = settings.unwrap();
        let renewed = certs::self_signed(&dir);
        let client = tls_client(&renewed.cert, None, TLS13_AES_128_GCM_SHA256);
        assert!(
            connect_tls(&client, settings.server_config()).is_err(),
            "the old one"
        );
        let reloaded = settings.reload().expect("the renewed files load");
        assert!(connect_tls(&client, reloaded.server_config()).is_ok());
        std::fs::remove_file(&server.key).unwrap();
        assert!(matches!(settings.reload(), Err(TlsError::Unreadable(..))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
