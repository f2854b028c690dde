//! What the environ says of a TLS connection: mod_ssl's `SSL_*` variables, from the
//! handshake.

use std::fmt::Write;

use rustls::pki_types::CertificateDer;
use rustls::{ProtocolVersion, ServerConnection};
use x509_cert::der::pem::{self, LineEnding};
use x509_cert::der::Decode;
use x509_cert::Certificate;

/// A TLS connection as the application sees it, computed once per connection after the
/// handshake and shared by its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsInfo {
    /// SSL_PROTOCOL: `TLSv1.2` or `TLSv1.3`, as mod_ssl names them.
    protocol: Option<&'static str>,
    /// SSL_CIPHER: the cipher suite as rustls names it (the IANA name; TLS 1.3 suites begin
    /// with `TLS13_`), e.g. `TLS13_AES_128_GCM_SHA256`.
    cipher: Option<&'static str>,
    /// The certificate the client presented, if it did.
    client: Option<ClientCert>,
}

/// A client's certificate, as the `SSL_CLIENT_*` variables give it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientCert {
    /// The certificate as sent, for an application that parses it itself.
    der: CertificateDer<'static>,
    /// SSL_CLIENT_CERT (and Rocket's SSL_CLIENT_RAW_CERT): PEM, 64 columns, lines ending in LF
    /// (`None` only if it could not be encoded: a certificate larger than memory).
    pem: Option<String>,
    /// SSL_CLIENT_S_DN, as mod_ssl writes it (RFC 4514: `CN=client,O=Example`, the most
    /// specific attribute first); `None` if the certificate does not parse.
    subject: Option<String>,
    /// SSL_CLIENT_I_DN, likewise.
    issuer: Option<String>,
    /// SSL_CLIENT_SERIAL: the serial number in upper-case hexadecimal, as mod_ssl writes it.
    serial: Option<String>,
}

impl TlsInfo {
    /// What `conn` tells once its handshake is complete (before, protocol and cipher are not
    /// known yet and no client certificate has arrived).
    pub(crate) fn of(conn: &ServerConnection) -> TlsInfo {
        let protocol = conn.protocol_version().and_then(protocol_name);
        let cipher = (conn.negotiated_cipher_suite()).and_then(|suite| suite.suite().as_str());
        let sent = conn.peer_certificates().and_then(<[_]>::first);
        TlsInfo {
            protocol,
            cipher,
            client: sent.cloned().map(ClientCert::of),
        }
    }

    /// SSL_PROTOCOL.
    pub(crate) fn protocol(&self) -> Option<&'static str> {
        self.protocol
    }

    /// SSL_CIPHER.
    pub(crate) fn cipher(&self) -> Option<&'static str> {
        self.cipher
    }

    /// SSL_CLIENT_VERIFY: `SUCCESS` when the client presented a certificate (rustls verified
    /// it: an invalid one fails the handshake, so mod_ssl's `FAILED` never reaches the
    /// application), `NONE` when it presented none.
    pub(crate) fn client_verify(&self) -> &'static str {
        match self.client {
            Some(_) => "SUCCESS",
            None => "NONE",
        }
    }

    /// The client's certificate as sent (DER).
    pub(crate) fn client_cert_der(&self) -> Option<&[u8]> {
        self.client.as_ref().map(|c| c.der.as_ref())
    }

    /// SSL_CLIENT_CERT: the client's certificate in PEM.
    pub(crate) fn client_cert_pem(&self) -> Option<&str> {
        self.client.as_ref()?.pem.as_deref()
    }

    /// SSL_CLIENT_S_DN.
    pub(crate) fn client_subject(&self) -> Option<&str> {
        self.client.as_ref()?.subject.as_deref()
    }

    /// SSL_CLIENT_I_DN.
    pub(crate) fn client_issuer(&self) -> Option<&str> {
        self.client.as_ref()?.issuer.as_deref()
    }

    /// SSL_CLIENT_SERIAL.
    pub(crate) fn client_serial(&self) -> Option<&str> {
        self.client.as_ref()?.serial.as_deref()
    }
}

impl ClientCert {
    /// The fields of `der`; those of a certificate that does not parse are `None` (rustls
    /// verified it, so this does not happen with a CA file).
    fn of(der: CertificateDer<'static>) -> ClientCert {
        let parsed = Certificate::from_der(&der).ok();
        let tbs = parsed.as_ref().map(Certificate::tbs_certificate);
        ClientCert {
            pem: pem::encode_string("CERTIFICATE", LineEnding::LF, &der).ok(),
            subject: tbs.map(|tbs| tbs.subject().to_string()),
            issuer: tbs.map(|tbs| tbs.issuer().to_string()),
            serial: tbs.map(|tbs| upper_hex(tbs.serial_number().as_bytes())),
            der,
        }
    }
}

/// mod_ssl's name of a protocol version; `None` for any but TLS 1.2 and 1.3, the only ones
/// the server speaks.
fn protocol_name(version: ProtocolVersion) -> Option<&'static str> {
    match version {
        ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
        ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
        _ => None,
    }
}

/// `bytes` in upper-case hexadecimal, two digits each (`00` for none).
fn upper_hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "00".into();
    }
    let mut hex = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        let _ = write!(hex, "{byte:02X}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{certs, connect_tls, tls_client};
    use crate::tls::{ClientCerts, TlsSettings};
    use rustls::crypto::aws_lc_rs::cipher_suite;
    use rustls::pki_types::pem::PemObject;

    /// The handshake of a client (presenting `pki`'s client certificate if `with_cert`)
    /// offering `suite` with a server that asks optionally.
    fn info(name: &str, suite: rustls::SupportedCipherSuite, with_cert: bool) -> TlsInfo {
        let dir = certs::scratch_dir(name);
        let server = certs::self_signed(&dir);
        let pki = certs::client_pki(&dir);
        let settings = TlsSettings::load(
            &server.cert,
            &server.key,
            Some(&pki.ca),
            ClientCerts::Optional,
        )
        .unwrap();
        let client = tls_client(&server.cert, with_cert.then_some(&pki.client), suite);
        let conn = connect_tls(&client, settings.server_config()).expect("a handshake");
        let info = TlsInfo::of(&conn);
        if with_cert {
            let sent = std::fs::read(&pki.client.cert).unwrap();
            let sent = CertificateDer::from_pem_slice(&sent).unwrap();
            assert_eq!(
                info.client_cert_der(),
                Some(sent.as_ref()),
                "the DER as sent"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
        info
    }

    #[test]
    fn protocol_and_cipher_are_named_as_mod_ssl_and_rustls_name_them() {
        let cases = [
            (
                cipher_suite::TLS13_AES_128_GCM_SHA256,
                "TLSv1.3",
                "TLS13_AES_128_GCM_SHA256",
            ),
            (
                cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
                "TLSv1.3",
                "TLS13_CHACHA20_POLY1305_SHA256",
            ),
            (
                cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                "TLSv1.2",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            ),
        ];
        for (at, (suite, protocol, cipher)) in cases.into_iter().enumerate() {
            let info = info(&format!("info-suite-{at}"), suite, false);
            assert_eq!(info.protocol(), Some(protocol), "{cipher}");
            assert_eq!(info.cipher(), Some(cipher));
        }
    }

    #[test]
    fn a_client_certificate_gives_every_client_field() {
        let info = info("info-client", cipher_suite::TLS13_AES_128_GCM_SHA256, true);
        assert_eq!(info.client_verify(), "SUCCESS");
        assert_eq!(info.client_subject(), Some(certs::CLIENT_DN));
        assert_eq!(info.client_issuer(), Some(certs::CA_DN));
        assert_eq!(info.client_serial(), Some(certs::CLIENT_SERIAL));
        let pem = info.client_cert_pem().expect("the PEM");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
        assert!(pem.ends_with("\n-----END CERTIFICATE-----\n"), "{pem}");
        let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let (last, full) = body.split_last().unwrap();
        assert!(full.iter().all(|line| line.len() == 64), "{pem}");
        assert!(!last.is_empty() && last.len() <= 64, "{pem}");
        let decoded = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(Some(decoded.as_ref()), info.client_cert_der());
    }

    #[test]
    fn without_a_client_certificate_verify_is_none() {
        let info = info("info-none", cipher_suite::TLS13_AES_128_GCM_SHA256, false);
        assert_eq!(info.client_verify(), "NONE");
        assert_eq!(info.client_cert_der(), None);
        assert_eq!(info.client_cert_pem(), None);
        assert_eq!(info.client_subject(), None);
        assert_eq!(info.client_issuer(), None);
        assert_eq!(info.client_serial(), None);
    }

    #[test]
    fn serial_numbers_are_upper_case_hex() {
        assert_eq!(upper_hex(&[0x0a, 0xbc, 0x01]), "0ABC01");
        assert_eq!(upper_hex(&[]), "00");
    }
}
