//! Session tickets whose keys every worker process of a master shares: a client resumes its
//! session whichever child it reaches, and after a reload (SIGHUP, `Restart`) as before.
//!
//! The keys form a chain, one key per [`PERIOD`] of the clock: each is derived from the one
//! before (HKDF-SHA256), and a process keeps only the current key and the last one, as
//! rustls' own ticketer rotates and erases its keys, so what a process holds opens only
//! tickets of the current and the last period. A process starts the chain with random keys,
//! or takes its master's [`Link`] (the period and its two keys) when it starts; from there
//! each moves along the chain by the clock alone, and they all hold the same keys.
//!
//! Each TLS interface seals with a key of its own, derived from the period's key and what
//! makes the interface's security (its certificate, key and CA files, and whether it asks
//! for a client certificate): a ticket from an interface that asks for none must not resume
//! on one that requires one. A ticket is the period (8 bytes, big-endian), a random nonce
//! (12 bytes), and the session sealed with AES-256-GCM under the interface's key of that
//! period (the period is authenticated too).

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use rustls::server::ProducesTickets;

use super::TlsError;

/// How long each key of the chain is the current one: rustls' own rotation period. A
/// ticket is accepted in its period and the next, so for at least this long.
const PERIOD: u64 = 6 * 60 * 60;

/// The length of a key (AES-256).
const KEY_LEN: usize = 32;

/// The length of a ticket's period field.
const PERIOD_LEN: usize = 8;

/// The length of a [`Link`] as bytes: its period and its two keys.
pub(crate) const LINK_LEN: usize = PERIOD_LEN + 2 * KEY_LEN;

/// The salt of the chain's key derivation: it names the purpose, so that the keys serve
/// nothing else.
const CHAIN_SALT: &[u8] = b"skyrocket session ticket keys";

/// The process's place in the chain, set once: by the master's link, or at random.
static CHAIN: OnceLock<Mutex<Link>> = OnceLock::new();

/// A period of the chain and its keys.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Link {
    /// The period (counted in [`PERIOD`]s since the Unix epoch) whose key is `current`.
    period: u64,
    /// The key that seals new tickets and opens those of `period`.
    current: [u8; KEY_LEN],
    /// The key that opens tickets of the period before.
    previous: [u8; KEY_LEN],
}

impl Link {
    /// A new chain at `period`, with random keys.
    fn random(period: u64) -> Result<Link, TlsError> {
        let mut link = Link {
            period,
            current: [0; KEY_LEN],
            previous: [0; KEY_LEN],
        };
        for key in [&mut link.current, &mut link.previous] {
            aws_lc_rs::rand::fill(key).map_err(|_| crypto("no random bytes for tickets"))?;
        }
        Ok(link)
    }

    /// Moves along the chain to `period` (never back), erasing the keys left behind.
    fn advance_to(&mut self, period: u64) {
        while self.period < period {
            self.previous = self.current;
            self.current = next_key(&self.current);
            self.period += 1;
        }
    }

    /// The key that opens tickets of `period`, if it is held.
    fn key_of(&self, period: u64) -> Option<&[u8; KEY_LEN]> {
        match self.period.checked_sub(period)? {
            0 => Some(&self.current),
            1 => Some(&self.previous),
            _ => None,
        }
    }

    /// The link as bytes, for a child process.
    pub(crate) fn to_bytes(&self) -> [u8; LINK_LEN] {
        let mut bytes = [0u8; LINK_LEN];
        bytes[..PERIOD_LEN].copy_from_slice(&self.period.to_be_bytes());
        bytes[PERIOD_LEN..PERIOD_LEN + KEY_LEN].copy_from_slice(&self.current);
        bytes[PERIOD_LEN + KEY_LEN..].copy_from_slice(&self.previous);
        bytes
    }

    /// A link from [`Link::to_bytes`].
    fn from_bytes(bytes: &[u8; LINK_LEN]) -> Link {
        let mut period = [0; PERIOD_LEN];
        let mut link = Link {
            period: 0,
            current: [0; KEY_LEN],
            previous: [0; KEY_LEN],
        };
        period.copy_from_slice(&bytes[..PERIOD_LEN]);
        link.period = u64::from_be_bytes(period);
        link.current
            .copy_from_slice(&bytes[PERIOD_LEN..PERIOD_LEN + KEY_LEN]);
        link.previous
            .copy_from_slice(&bytes[PERIOD_LEN + KEY_LEN..]);
        link
    }
}

impl std::fmt::Debug for Link {
    /// The period alone: the keys stay out of every log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("period", &self.period)
            .finish()
    }
}

/// The key after `key` in the chain: it cannot give `key` back.
fn next_key(key: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    derive(key, &[b"next"])
}

/// The key an interface described by `context` seals with, from its period's `key`.
fn interface_key(key: &[u8; KEY_LEN], context: &[u8]) -> [u8; KEY_LEN] {
    derive(key, &[b"interface", context])
}

/// A key derived from `key` for the purpose `info` names (HKDF-SHA256).
fn derive(key: &[u8; KEY_LEN], info: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut derived = [0u8; KEY_LEN];
    let prk = Salt::new(HKDF_SHA256, CHAIN_SALT).extract(key);
    // HKDF-SHA256 expands to 32 bytes of one hash length, which cannot fail.
    if let Ok(okm) = prk.expand(info, HKDF_SHA256) {
        let _ = okm.fill(&mut derived);
    }
    derived
}

/// A crypto failure of the ticket keys.
fn crypto(what: &str) -> TlsError {
    TlsError::Crypto(what.to_string())
}

/// The current period by the system clock.
fn period_now() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| d.as_secs() / PERIOD)
}

/// Takes the master's link (see [`export`]): called once, at start, before any TLS interface
/// is configured. Without it a process starts a chain of its own.
pub(crate) fn adopt(bytes: &[u8; LINK_LEN]) -> Result<(), TlsError> {
    CHAIN
        .set(Mutex::new(Link::from_bytes(bytes)))
        .map_err(|_| crypto("the ticket keys were set already"))
}

/// The process's chain, started at random if no master's link was adopted.
fn chain() -> Result<&'static Mutex<Link>, TlsError> {
    if let Some(chain) = CHAIN.get() {
        return Ok(chain);
    }
    let link = Link::random(period_now())?;
    Ok(CHAIN.get_or_init(|| Mutex::new(link)))
}

/// The process's current link, for a child process to [`adopt`].
pub(crate) fn export() -> Result<Link, TlsError> {
    Ok(at_now(chain()?).clone())
}

/// `chain`, moved along to the clock's period.
fn at_now(chain: &'static Mutex<Link>) -> MutexGuard<'static, Link> {
    let mut link = chain.lock().unwrap_or_else(|e| e.into_inner());
    link.advance_to(period_now());
    link
}

/// The ticketer of a TLS interface whose security `context` describes (interfaces of the
/// same context, in this process or another of its master, open each other's tickets).
pub(crate) fn ticketer(context: &[u8]) -> Result<std::sync::Arc<dyn ProducesTickets>, TlsError> {
    Ok(std::sync::Arc::new(SharedTickets {
        chain: chain()?,
        context: context.to_vec(),
    }))
}

/// Seals `plain` into a ticket of the current period for the interface of `context`.
fn seal(link: &Link, context: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).ok()?;
    let key = interface_key(&link.current, context);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).ok()?);
    let period = link.period.to_be_bytes();
    let mut sealed = plain.to_vec();
    let aad = Aad::from(period);
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad, &mut sealed)
        .ok()?;
    Some([&period[..], &nonce, &sealed].concat())
}

/// Opens a ticket the interface of `context` sealed in the current period or the last;
/// `None` for anything else.
fn open(link: &Link, context: &[u8], ticket: &[u8]) -> Option<Vec<u8>> {
    let (period, rest) = ticket.split_at_checked(PERIOD_LEN)?;
    let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
    let period: [u8; PERIOD_LEN] = period.try_into().ok()?;
    let key = interface_key(link.key_of(u64::from_be_bytes(period))?, context);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut sealed = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(period), &mut sealed)
        .ok()?;
    Some(plain.to_vec())
}

/// rustls' view of the process's chain, for one interface.
#[derive(Debug)]
struct SharedTickets {
    /// The chain, moved along to the clock's period at each use.
    chain: &'static Mutex<Link>,
    /// What makes the interface's security, from which its keys are derived.
    context: Vec<u8>,
}

impl ProducesTickets for SharedTickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        PERIOD as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        seal(&at_now(self.chain), &self.context, plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        open(&at_now(self.chain), &self.context, cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &[u8] = b"a session's secrets";
    const HERE: &[u8] = b"an interface";

    #[test]
    fn a_ticket_opens_only_on_interfaces_of_its_context() {
        let link = Link::random(100).unwrap();
        let ticket = seal(&link, HERE, SESSION).unwrap();
        assert_eq!(open(&link, HERE, &ticket).as_deref(), Some(SESSION));
        let strict: &[u8] = b"one that requires a certificate";
        assert_eq!(open(&link, strict, &ticket), None);
    }

    #[test]
    fn a_link_passed_as_bytes_opens_the_same_tickets() {
        let master = Link::random(100).unwrap();
        let child = Link::from_bytes(&master.to_bytes());
        assert_eq!(child, master);
        let ticket = seal(&master, HERE, SESSION).unwrap();
        assert_eq!(open(&child, HERE, &ticket).as_deref(), Some(SESSION));
        let other = Link::random(100).unwrap();
        assert_eq!(open(&other, HERE, &ticket), None, "another chain's ticket");
    }

    #[test]
    fn links_that_move_along_apart_keep_opening_each_others_tickets() {
        let mut master = Link::random(100).unwrap();
        let mut child = Link::from_bytes(&master.to_bytes());
        let old = seal(&master, HERE, SESSION).unwrap();
        master.advance_to(101);
        child.advance_to(101);
        assert_eq!(master, child);
        assert_eq!(
            open(&child, HERE, &old).as_deref(),
            Some(SESSION),
            "the last period's"
        );
        let new = seal(&master, HERE, SESSION).unwrap();
        assert_eq!(open(&child, HERE, &new).as_deref(), Some(SESSION));
        child.advance_to(102);
        assert_eq!(
            open(&child, HERE, &old),
            None,
            "two periods old: its key is erased"
        );
        assert_eq!(open(&child, HERE, &new).as_deref(), Some(SESSION));
    }

    #[test]
    fn a_link_never_moves_back() {
        let mut link = Link::random(100).unwrap();
        let before = link.clone();
        link.advance_to(99);
        assert_eq!(link, before);
    }

    #[test]
    fn tickets_altered_truncated_or_from_the_future_are_refused() {
        let link = Link::random(100).unwrap();
        let ticket = seal(&link, HERE, SESSION).unwrap();
        let mut flipped = ticket.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let mut later = ticket.clone();
        later[PERIOD_LEN - 1] = 101;
        let table: [(&str, &[u8]); 5] = [
            ("empty", b""),
            ("a period alone", &ticket[..PERIOD_LEN]),
            ("no tag", &ticket[..PERIOD_LEN + NONCE_LEN]),
            ("a flipped bit", &flipped),
            ("another period", &later),
        ];
        for (what, bad) in table {
            assert_eq!(open(&link, HERE, bad), None, "{what}");
        }
    }
}
