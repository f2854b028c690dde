//! Test certificates, made at test time with rcgen (the repository keeps none): a
//! self-signed server certificate for this machine, and a CA with a client certificate it
//! signed, written as PEM files. The unit tests share this file (`src/test_support.rs`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};

/// The subject of [`client_pki`]'s client certificate, as mod_ssl writes it (RFC 4514: the
/// most specific attribute first, `,` in a value escaped).
pub const CLIENT_DN: &str = "CN=client,O=Skyrocket tests\\, clients";
/// The subject of [`client_pki`]'s CA: the client certificate's issuer.
pub const CA_DN: &str = "CN=Skyrocket test CA,O=Skyrocket tests";
/// The serial number of [`client_pki`]'s client certificate, as mod_ssl writes it.
pub const CLIENT_SERIAL: &str = "0A5EC0DE";

/// A certificate and its private key, as PEM files.
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key (PKCS#8).
    pub key: PathBuf,
}

/// A CA and a client certificate it signed, as PEM files.
pub struct ClientPki {
    /// The CA's certificate: the file for `ca_certs`.
    pub ca: PathBuf,
    /// The client's certificate ([`CLIENT_DN`], [`CLIENT_SERIAL`]) and key.
    pub client: CertFiles,
}

/// An empty directory of this test process named after `name`, under the system's
/// temporary directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skyrocket-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Writes a self-signed certificate for `localhost`, 127.0.0.1 and ::1 with its key (ECDSA
/// P-256) into `dir`, as `server.pem` and `server-key.pem`.
pub fn self_signed(dir: &Path) -> CertFiles {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let params = CertificateParams::new(names).expect("valid names");
    let key = KeyPair::generate().expect("a P-256 key");
    let cert = params.self_signed(&key).expect("a self-signed certificate");
    write_pair(dir, "server", &cert.pem(), &key.serialize_pem())
}

/// Writes a CA (`ca.pem`) and a client certificate it signed, with its key (`client.pem`,
/// `client-key.pem`), into `dir`.
pub fn client_pki(dir: &Path) -> ClientPki {
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name(&[
        (DnType::OrganizationName, "Skyrocket tests"),
        (DnType::CommonName, "Skyrocket test CA"),
    ]);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("a P-256 key");
    let ca_cert = ca.self_signed(&ca_key).expect("a CA certificate");
    let issuer = Issuer::new(ca, ca_key);

    let mut client = CertificateParams::default();
    client.distinguished_name = name(&[
        (DnType::OrganizationName, "Skyrocket tests, clients"),
        (DnType::CommonName, "client"),
    ]);
    client.serial_number = Some(SerialNumber::from_slice(&[0x0a, 0x5e, 0xc0, 0xde]));
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().expect("a P-256 key");
    let client_cert = (client.signed_by(&client_key, &issuer)).expect("a client certificate");

    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_cert.pem()).expect("write the CA certificate");
    let client = write_pair(
        dir,
        "client",
        &client_cert.pem(),
        &client_key.serialize_pem(),
    );
    ClientPki { ca, client }
}

/// A distinguished name of these attributes, in this order (the least specific first).
fn name(attributes: &[(DnType, &str)]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for (kind, value) in attributes {
        name.push(kind.clone(), *value);
    }
    name
}

/// Writes `NAME.pem` and `NAME-key.pem` into `dir`.
fn write_pair(dir: &Path, name: &str, cert: &str, key: &str) -> CertFiles {
    let files = CertFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&files.cert, cert).expect("write the certificate");
    std::fs::write(&files.key, key).expect("write the key");
    files
}
