//! TLS interfaces, apart from how their bytes move: what an interface is configured with
//! ([`TlsSettings`], read from its certificate, key and CA files), why those files cannot
//! serve ([`TlsError`]), and what a connection's handshake tells the application
//! ([`TlsInfo`]), and the session tickets' keys, shared with a master's other worker
//! processes ([`tickets`]). Nothing here knows of actors, sockets or threads.
//!
//! Everything runs on rustls with its default provider, aws-lc-rs: faster than ring on
//! AES-GCM, and with the post-quantum hybrid key exchange X25519MLKEM768 on by default.

mod error;
mod info;
mod settings;
pub(crate) mod tickets;

pub use error::TlsError;
pub(crate) use info::TlsInfo;
pub use settings::ClientCerts;
pub(crate) use settings::TlsSettings;
