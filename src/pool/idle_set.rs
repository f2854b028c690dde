//! The set of connections waiting for input: one epoll instance shared by a pool's workers.
//!
//! A connection is registered once, edge-triggered, when it is admitted. Between requests it is
//! *parked*; a free worker waiting on the set (several may wait at once; the kernel wakes one
//! per event) *takes* a parked connection that became readable and owns it until it parks it
//! again or closes it. Parking costs no system call: input that arrives while a worker owns the
//! connection is noted as *pending*, and parking a connection with pending input hands it
//! straight back to its worker. The table is the single authority on who owns a connection:
//! whoever changes an entry from parked to owned (a worker) or removes it (the Monitor expiring
//! it) owns it.
//!
//! One `epoll_wait` reports up to [`BATCH`] ready connections: the worker takes the first and
//! leaves the rest on the table's *ready list*, where the next worker to wait takes one without
//! a system call (under load, one wait serves a batch of requests, as an event loop does). The
//! kernel no longer knows of those connections, so a worker asleep in `epoll_wait` must be
//! woken for them: whoever leaves the list non-empty while a worker sleeps writes to the set's
//! eventfd, which the epoll instance watches. A worker counts itself asleep (`sleepers`) under
//! the table's lock in the same critical section that found the list empty, and the list is
//! filled under that lock too, so either the sleeper sees the connection or the one who left
//! it there sees the sleeper and wakes it (docs/architecture.md, "The ready list").

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::{epoll, eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use slab::Slab;

use crate::conn::{has_input, has_room, Connection, Ticket};
use crate::stats::{Gauge, Stats};

use super::handoff::Source;

/// Gives every set a distinct id, so that a ticket names the set it belongs to.
static NEXT_SET_ID: AtomicU64 = AtomicU64::new(1);

/// The most ready connections one `epoll_wait` reports: the system call is paid once per
/// batch of requests under load.
const BATCH: usize = 64;

/// The epoll token of the set's eventfd (no connection's token: keys stay far below 2^32).
const WAKE: u64 = u64::MAX;

/// What became of a connection handed to [`IdleSet::park`].
pub(crate) enum Parking {
    /// Parked (or, if it was no longer registered, dropped).
    Parked,
    /// Input arrived while it was served: serve it again.
    Pending(Connection),
    /// The set was handed over to another pool: the connection goes there.
    Sealed(Connection),
}

/// Where a registered connection is.
enum Place {
    /// Waiting for input.
    Parked {
        /// The connection.
        conn: Connection,
        /// When it was parked, for the keep-alive timeout.
        since: Instant,
        /// Never served yet: counts as queued rather than idle.
        fresh: bool,
    },
    /// Being served by a worker.
    Owned {
        /// Input arrived since the worker took it.
        pending: bool,
    },
}

/// A registered connection.
struct Entry {
    /// Tells this entry from earlier ones at the same key.
    generation: u32,
    /// Parked or owned.
    place: Place,
    /// Registered for writability too: it waits to send the rest of a response.
    writing: bool,
}

/// A parked connection the kernel reported ready, not handed out yet.
#[derive(Clone, Copy)]
struct Ready {
    /// Its entry's key.
    key: usize,
    /// Its entry's generation: an entry removed meanwhile makes this stale.
    generation: u32,
    /// The peer closed its side.
    hung_up: bool,
}

/// The registered connections, behind one lock.
struct Table {
    /// Entries by key.
    slab: Slab<Entry>,
    /// The last generation given out.
    generation: u32,
    /// Parked entries never served.
    fresh: usize,
    /// Parked entries in all.
    parked: usize,
    /// The set was handed over (restart): nothing more is parked here.
    sealed: bool,
    /// Reported ready and not handed out yet, oldest first.
    ready: VecDeque<Ready>,
    /// Workers that found `ready` empty and wait (or are about to) in `epoll_wait`: leaving
    /// connections on `ready` while one does must wake one.
    sleepers: usize,
}

/// Connections waiting for input, watched by one epoll instance.
pub(crate) struct IdleSet {
    /// This set's id.
    id: u64,
    /// The epoll instance.
    epoll: OwnedFd,
    /// Watched by `epoll` (edge-triggered, never read): a write wakes a sleeper for
    /// connections left on the ready list.
    wake: OwnedFd,
    /// The registered connections.
    table: Mutex<Table>,
    /// Gauges: Queued (fresh connections) and Idle (keep-alive connections).
    stats: Arc<Stats>,
}

impl IdleSet {
    /// An empty set.
    pub(crate) fn new(stats: Arc<Stats>) -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let flags = epoll::EventFlags::IN | epoll::EventFlags::ET;
        epoll::add(&epoll, &wake, epoll::EventData::new_u64(WAKE), flags)?;
        Ok(IdleSet {
            id: NEXT_SET_ID.fetch_add(1, Ordering::Relaxed),
            epoll,
            wake,
            table: Mutex::new(Table {
                slab: Slab::new(),
                generation: 0,
                fresh: 0,
                parked: 0,
                sealed: false,
                ready: VecDeque::with_capacity(BATCH),
                sleepers: 0,
            }),
            stats,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers and parks a connection that is not in this set: a new one (`fresh`), or one
    /// moved from another pool. On error the connection is closed.
    pub(crate) fn admit(&self, mut conn: Connection, fresh: bool) -> io::Result<()> {
        let mut table = self.lock();
        table.generation = table.generation.wrapping_add(1);
        let generation = table.generation;
        let key = table.slab.vacant_key();
        conn.ticket = Some(Ticket {
            set: self.id,
            key,
            generation,
        });
        let data = epoll::EventData::new_u64(token(key, generation));
        let writing = conn.outbox.is_some();
        epoll::add(&self.epoll, conn.stream.as_fd(), data, interest(writing))?;
        let place = self.parked_place(&mut table, conn, fresh);
        (table.slab).insert(Entry {
            generation,
            place,
            writing,
        });
        Ok(())
    }

    /// Parks a connection a worker took from this set, or gives it back when input is
    /// already pending (serve it again). A connection from elsewhere is admitted.
    pub(crate) fn park(&self, conn: Connection) -> Parking {
        let Some(ticket) = conn.ticket.filter(|t| t.set == self.id) else {
            let peer = conn.peer;
            if let Err(e) = self.admit(conn, false) {
                log::warn!("{peer}: cannot watch connection: {e}");
            }
            return Parking::Parked;
        };
        let mut table = self.lock();
        if table.sealed {
            if table.slab.get(ticket.key).map(|e| e.generation) == Some(ticket.generation) {
                table.slab.remove(ticket.key);
            }
            return Parking::Sealed(conn);
        }
        let pending = match table.slab.get(ticket.key) {
            Some(e) if e.generation == ticket.generation => {
                matches!(e.place, Place::Owned { pending: true })
            }
            _ => return Parking::Parked,
        };
        if pending {
            if let Some(entry) = table.slab.get_mut(ticket.key) {
                entry.place = Place::Owned { pending: false };
            }
            return Parking::Pending(conn);
        }
        let writing = conn.outbox.is_some();
        if let Err(e) = self.watch_writes(&table, ticket, &conn, writing) {
            log::warn!("{}: cannot watch connection: {e}", conn.peer);
            table.slab.remove(ticket.key);
            return Parking::Parked;
        }
        let place = self.parked_place(&mut table, conn, false);
        if let Some(entry) = table.slab.get_mut(ticket.key) {
            entry.place = place;
            entry.writing = writing;
        }
        Parking::Parked
    }

    /// Adds or removes the interest in writability when `writing` changes.
    fn watch_writes(
        &self,
        table: &Table,
        ticket: Ticket,
        conn: &Connection,
        writing: bool,
    ) -> io::Result<()> {
        let changed = (table.slab.get(ticket.key)).is_some_and(|e| e.writing != writing);
        if !changed {
            return Ok(());
        }
        let data = epoll::EventData::new_u64(token(ticket.key, ticket.generation));
        epoll::modify(&self.epoll, conn.stream.as_fd(), data, interest(writing))?;
        Ok(())
    }

    fn parked_place(&self, table: &mut Table, conn: Connection, fresh: bool) -> Place {
        table.parked += 1;
        table.fresh += usize::from(fresh);
        self.stats.inc(gauge_of(fresh));
        Place::Parked {
            conn,
            since: Instant::now(),
            fresh,
        }
    }

    /// Forgets a connection its worker closed.
    pub(crate) fn forget(&self, ticket: Ticket) {
        let mut table = self.lock();
        let current = table.slab.get(ticket.key).map(|e| e.generation);
        if ticket.set == self.id && current == Some(ticket.generation) {
            table.slab.remove(ticket.key);
        }
    }

    /// Forgets a closed connection, if it was ever admitted.
    pub(crate) fn forget_any(&self, ticket: Option<Ticket>) {
        if let Some(ticket) = ticket {
            self.forget(ticket);
        }
    }

    /// Waits up to `timeout` for a parked connection with input and takes it; the flag says
    /// the peer has closed its side (its last bytes may still be buffered). Takes from the
    /// ready list first; waits in `epoll_wait` only when it is empty.
    #[cfg(test)]
    pub(crate) fn take_ready(&self, timeout: Duration) -> Option<(Connection, bool)> {
        self.take_up_to(timeout, BATCH)
    }

    /// [`IdleSet::take_ready`], with `epoll_wait` reporting at most `most` connections: one
    /// while the application is slow, when each needs a worker of its own and the kernel
    /// wakes one waiting worker per connection without the ready list's eventfd.
    fn take_up_to(&self, timeout: Duration, most: usize) -> Option<(Connection, bool)> {
        let timeout = Timespec::try_from(timeout).ok()?;
        {
            let mut table = self.lock();
            if let Some(taken) = self.take_listed(&mut table) {
                return Some(taken);
            }
            table.sleepers += 1;
        }
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); BATCH];
        let reported = epoll::wait(
            &self.epoll,
            &mut events[..most.clamp(1, BATCH)],
            Some(&timeout),
        );
        let mut table = self.lock();
        table.sleepers -= 1;
        for event in reported.map(|(ready, _)| &*ready).unwrap_or_default() {
            note_event(&mut table, event);
        }
        self.take_listed(&mut table)
    }

    /// Takes the oldest connection on the ready list that is still parked, and wakes a
    /// sleeper if others are left on it.
    fn take_listed(&self, table: &mut MutexGuard<'_, Table>) -> Option<(Connection, bool)> {
        let taken = self.pop_ready(table);
        if !table.ready.is_empty() && table.sleepers > 0 {
            self.wake_sleeper();
        }
        taken
    }

    fn pop_ready(&self, table: &mut Table) -> Option<(Connection, bool)> {
        while let Some(ready) = table.ready.pop_front() {
            let Some(entry) =
                (table.slab.get_mut(ready.key)).filter(|e| e.generation == ready.generation)
            else {
                continue;
            };
            if let Place::Parked { .. } = entry.place {
                let place = std::mem::replace(&mut entry.place, Place::Owned { pending: false });
                let conn = self.unparked(table, place);
                return conn.map(|conn| (conn, ready.hung_up));
            }
        }
        None
    }

    /// Wakes one worker asleep in `epoll_wait` (or the next to wait there).
    fn wake_sleeper(&self) {
        if let Err(e) = rustix::io::write(&self.wake, &1u64.to_ne_bytes()) {
            log::warn!("cannot wake a worker for ready connections: {e}");
        }
    }

    /// Counts a place that stopped being parked and gives its connection.
    fn unparked(&self, table: &mut Table, place: Place) -> Option<Connection> {
        let Place::Parked { conn, fresh, .. } = place else {
            return None;
        };
        table.parked -= 1;
        table.fresh -= usize::from(fresh);
        self.stats.dec(gauge_of(fresh));
        Some(conn)
    }

    /// Removes the parked connections that `select` picks (given how long each has been
    /// parked, whether it is fresh, and the connection), with their freshness.
    fn remove_parked(
        &self,
        select: impl Fn(Duration, bool, &Connection) -> bool,
    ) -> Vec<(Connection, bool)> {
        let mut table = self.lock();
        let now = Instant::now();
        let keys: Vec<usize> = (table.slab.iter())
            .filter(|(_, e)| match &e.place {
                Place::Parked { since, fresh, conn } => {
                    select(now.duration_since(*since), *fresh, conn)
                }
                Place::Owned { .. } => false,
            })
            .map(|(key, _)| key)
            .collect();
        let mut removed = Vec::with_capacity(keys.len());
        for key in keys {
            let place = table.slab.remove(key).place;
            let fresh = matches!(place, Place::Parked { fresh: true, .. });
            removed.extend(self.unparked(&mut table, place).map(|c| (c, fresh)));
        }
        removed
    }

    /// Removes connections parked for `timeout` or longer, and partial heads past their
    /// deadline with no input waiting (input that waits is for a worker to judge), to be
    /// closed.
    pub(crate) fn expire(&self, timeout: Duration) -> Vec<(Connection, bool)> {
        let now = Instant::now();
        self.remove_parked(|parked, _, conn| match &conn.outbox {
            Some(outbox) => outbox.deadline() <= now && !has_room(&conn.stream),
            None => parked >= timeout || request_overdue(conn, now),
        })
    }

    /// Removes every parked connection, with its freshness, and seals the set: connections
    /// parked later are given back as [`Parking::Sealed`] (restart: they move to the next pool).
    pub(crate) fn take_all(&self) -> Vec<(Connection, bool)> {
        self.lock().sealed = true;
        self.remove_parked(|_, _, _| true)
    }

    /// Removes the served connections parked for `grace` or longer with nothing going on:
    /// no input waiting (reported or not), no partial request, no response owed (a graceful
    /// drain closes them; the others are a worker's or the Monitor's expiry's to judge).
    pub(crate) fn take_silent(&self, grace: Duration) -> Vec<Connection> {
        let silent = self.remove_parked(|parked, fresh, conn| {
            let quiet = conn.outbox.is_none() && conn.buffered.is_empty() && conn.head.is_none();
            !fresh && parked >= grace && quiet && !has_input(&conn.stream)
        });
        silent.into_iter().map(|(conn, _)| conn).collect()
    }

    /// How many parked connections were served before (keep-alive ones, idle or not).
    pub(crate) fn served(&self) -> usize {
        let table = self.lock();
        table.parked - table.fresh
    }

    /// How many registered connections a worker owns (took, and has not parked or
    /// forgotten yet): serving them, or about to.
    pub(crate) fn owned(&self) -> usize {
        let table = self.lock();
        table.slab.len() - table.parked
    }

    /// How many parked connections were never served (new connections waiting).
    pub(crate) fn fresh(&self) -> usize {
        self.lock().fresh
    }

    /// How many parked connections were never served and have input: new requests waiting
    /// for a worker (silent new connections need none). One `poll` over their sockets.
    pub(crate) fn fresh_with_input(&self) -> usize {
        let table = self.lock();
        let mut fds: Vec<PollFd<'_>> = (table.slab.iter())
            .filter_map(|(_, entry)| match &entry.place {
                Place::Parked {
                    conn, fresh: true, ..
                } => Some(PollFd::new(&conn.stream, PollFlags::IN)),
                _ => None,
            })
            .collect();
        if fds.is_empty() || poll(&mut fds, Some(&Timespec::default())).is_err() {
            return 0;
        }
        fds.iter()
            .filter(|fd| fd.revents().contains(PollFlags::IN))
            .count()
    }

    /// How many connections are parked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().parked
    }

    /// Whether no connection is parked.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many workers found the ready list empty and wait in `epoll_wait`.
    #[cfg(test)]
    pub(crate) fn sleepers(&self) -> usize {
        self.lock().sleepers
    }
}

/// The events a connection is watched for: input (and the peer closing), and room to send
/// when it is `writing`; edge-triggered.
fn interest(writing: bool) -> epoll::EventFlags {
    let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ET;
    match writing {
        true => flags | epoll::EventFlags::OUT,
        false => flags,
    }
}

/// Whether a partial request's deadline has passed with nothing more received.
fn request_overdue(conn: &Connection, now: Instant) -> bool {
    let overdue = conn
        .request_deadline
        .is_some_and(|deadline| deadline <= now);
    overdue && !has_input(&conn.stream)
}

/// Notes what epoll reported: a parked connection goes on the ready list; input for one a
/// worker owns is pending; stale reports and the eventfd's are dropped.
fn note_event(table: &mut Table, event: &epoll::Event) {
    let (flags, data) = (event.flags, event.data.u64());
    if data == WAKE {
        return;
    }
    let hung_up = flags.intersects(epoll::EventFlags::RDHUP | epoll::EventFlags::HUP);
    let (key, generation) = (
        usize::try_from(data >> 32).unwrap_or(usize::MAX),
        data as u32,
    );
    let Some(entry) = table
        .slab
        .get_mut(key)
        .filter(|e| e.generation == generation)
    else {
        return;
    };
    match &mut entry.place {
        Place::Owned { pending } => *pending = true,
        Place::Parked { .. } => table.ready.push_back(Ready {
            key,
            generation,
            hung_up,
        }),
    }
}

fn token(key: usize, generation: u32) -> u64 {
    ((key as u64) << 32) | u64::from(generation)
}

fn gauge_of(fresh: bool) -> Gauge {
    match fresh {
        true => Gauge::Queued,
        false => Gauge::Idle,
    }
}

impl Source for IdleSet {
    type Item = (Connection, bool);

    fn take(&self, timeout: Duration, batch: bool) -> Option<Self::Item> {
        self.take_up_to(timeout, if batch { BATCH } else { 1 })
    }
}

#[cfg(test)]
mod tests {
    //! The idle set as a unit: real sockets on loopback, no worker.

    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    use super::Parking;
    use crate::conn::has_input;
    use crate::stats::Gauge;
    use crate::test_support::*;

    #[test]
    fn hands_out_a_connection_only_once_it_has_input() {
        let (set, stats) = new_set();
        let listener = loopback();
        let (mut client, conn) = pair(&listener);
        set.admit(conn, true).expect("admitted");
        assert_eq!((set.len(), set.fresh()), (1, 1));
        assert_eq!(stats.get(Gauge::Queued), 1);
        assert_eq!(stats.get(Gauge::Idle), 0);

        assert!(
            take(&set, Duration::from_millis(50)).is_none(),
            "nothing to read yet"
        );
        assert_eq!(set.len(), 1, "still parked");

        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let mut conn = take(&set, WAIT).expect("a connection with input");
        assert_eq!(conn.peer.port(), port(&client));
        assert!(conn.ticket.is_some(), "carries its place in the set");
        assert_eq!((set.len(), set.fresh()), (0, 0));
        assert_eq!(stats.get(Gauge::Queued), 0);
        assert_eq!(stats.get(Gauge::Idle), 0);

        // The socket works for the worker that took it.
        drain_input(&mut conn, 16);
        conn.stream.write_all(b"pong").unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
    }

    #[test]
    fn parked_connection_comes_back_when_input_arrives() {
        let (set, stats) = new_set();
        let listener = loopback();
        let (mut client, conn) = pair(&listener);
        set.admit(conn, true).unwrap();
        client.write_all(b"one").unwrap();
        let mut conn = take(&set, WAIT).expect("first request");
        drain_input(&mut conn, 3);

        assert!(matches!(set.park(conn), Parking::Parked));
        assert_eq!((set.len(), set.fresh()), (1, 0), "parked, not fresh");
        assert_eq!(stats.get(Gauge::Idle), 1);
        assert_eq!(stats.get(Gauge::Queued), 0);
        assert!(
            take(&set, Duration::from_millis(50)).is_none(),
            "idle until the client writes"
        );

        client.write_all(b"two").unwrap();
        let mut conn = take(&set, WAIT).expect("taken again");
        assert_eq!(conn.peer.port(), port(&client));
        assert_eq!(set.len(), 0);
        assert_eq!(stats.get(Gauge::Idle), 0);
        drain_input(&mut conn, 3);
    }

    #[test]
    fn input_while_served_makes_park_hand_it_back() {
        let (set, stats) = new_set();
        let listener = loopback();
        let (mut client, conn) = pair(&listener);
        set.admit(conn, true).unwrap();
        client.write_all(b"one").unwrap();
        let mut conn = take(&set, WAIT).expect("first request");
        drain_input(&mut conn, 3);

        // Input arrives while a worker owns the connection; another waiter sees the event.
        client.write_all(b"two").unwrap();
        let started = Instant::now();
        assert!(
            take(&set, WAIT).is_none(),
            "an owned connection is not handed out"
        );
        assert!(
            started.elapsed() < WAIT,
            "the event was seen, not timed out"
        );

        let conn = match set.park(conn) {
            Parking::Pending(conn) => conn,
            _ => panic!("parked despite pending input"),
        };
        assert_eq!(set.len(), 0, "still owned");
        assert_eq!(stats.get(Gauge::Idle), 0);

        // Served again, then parked for real.
        let mut conn = conn;
        drain_input(&mut conn, 3);
        assert!(matches!(set.park(conn), Parking::Parked));
        assert_eq!(set.len(), 1);
        assert_eq!(stats.get(Gauge::Idle), 1);
    }

    #[test]
    fn expire_closes_only_connections_parked_too_long() {
        let (set, stats) = new_set();
        let listener = loopback();
        let (mut old_client, old) = pair(&listener);
        let (mut new_client, new) = pair(&listener);
        set.admit(old, false).unwrap();
        let old_parked = Instant::now();
        assert!(
            set.expire(LONG_TIMEOUT).is_empty(),
            "nothing is that old yet"
        );
        wait_until("the first connection is old enough", || {
            old_parked.elapsed() >= SHORT_TIMEOUT
        });
        set.admit(new, false).unwrap();
        assert_eq!(stats.get(Gauge::Idle), 2);

        let expired = set.expire(SHORT_TIMEOUT);
        let ports: Vec<u16> = expired.iter().map(|(c, _)| c.peer.port()).collect();
        assert_eq!(ports, vec![port(&old_client)], "only the old one expires");
        assert!(!expired[0].1, "it was not fresh");
        drop(expired);
        assert_closed(&mut old_client);
        assert_eq!(set.len(), 1);
        assert_eq!(stats.get(Gauge::Idle), 1);

        // The recent one is still watched.
        new_client.write_all(b"x").unwrap();
        let conn = take(&set, WAIT).expect("the recent one is still there");
        assert_eq!(conn.peer.port(), port(&new_client));
    }

    #[test]
    fn take_silent_takes_only_served_connections_silent_for_the_grace() {
        let (set, stats) = new_set();
        let listener = loopback();
        let (_fresh_client, fresh) = pair(&listener);
        let (mut silent_client, silent) = pair(&listener);
        let (mut talking_client, talking) = pair(&listener);
        let (_partial_client, mut partial) = pair(&listener);
        talking_client.write_all(b"GET").unwrap();
        wait_until("the input arrives", || has_input(&talking.stream));
        partial.buffered.extend_from_slice(b"GET / HT");
        set.admit(fresh, true).unwrap();
        set.admit(silent, false).unwrap();
        set.admit(talking, false).unwrap();
        set.admit(partial, false).unwrap();
        let parked = Instant::now();
        assert!(
            set.take_silent(LONG_TIMEOUT).is_empty(),
            "none is that old yet"
        );
        wait_until("the first ones are old enough", || {
            parked.elapsed() >= SHORT_TIMEOUT
        });
        let (_recent_client, recent) = pair(&listener);
        set.admit(recent, false).unwrap();
        assert_eq!((set.served(), stats.get(Gauge::Idle)), (4, 4));

        let taken = set.take_silent(SHORT_TIMEOUT);
        let ports: Vec<u16> = taken.iter().map(|c| c.peer.port()).collect();
        assert_eq!(ports, vec![port(&silent_client)], "only the silent old one");
        drop(taken);
        assert_closed(&mut silent_client);
        assert_eq!((set.len(), set.fresh(), set.served()), (4, 1, 3));
        assert_eq!(stats.get(Gauge::Idle), 3);

        let rest = set.take_all();
        assert_eq!(rest.len(), 4);
        assert_eq!(rest.iter().filter(|(_, fresh)| *fresh).count(), 1);
        assert!(set.is_empty());
        assert_eq!(stats.get(Gauge::Queued), 0);
    }

    #[test]
    fn forgotten_connection_is_not_parked_and_its_stale_events_are_ignored() {
        let (set, stats) = new_set();
        let listener = loopback();
        let (mut client, conn) = pair(&listener);
        set.admit(conn, true).unwrap();
        client.write_all(b"one").unwrap();
        let mut conn = take(&set, WAIT).unwrap();
        drain_input(&mut conn, 3);
        let ticket = conn.ticket.expect("a ticket");

        set.forget(ticket);
        // An event for the forgotten entry (its worker closes it a moment later) is ignored.
        client.write_all(b"two").unwrap();
        let started = Instant::now();
        assert!(take(&set, WAIT).is_none(), "a stale event gives nothing");
        assert!(
            started.elapsed() < WAIT,
            "the event was seen, not timed out"
        );
        drain_input(&mut conn, 3);

        // The next connection takes the freed place; a late event of the forgotten one there is
        // still not taken for it.
        let (mut next_client, next) = pair(&listener);
        set.admit(next, false).unwrap();
        client.write_all(b"three").unwrap();
        let started = Instant::now();
        assert!(
            take(&set, WAIT).is_none(),
            "a stale event does not hand out the place's new connection"
        );
        assert!(
            started.elapsed() < WAIT,
            "the event was seen, not timed out"
        );
        assert_eq!(set.len(), 1, "the new connection stays parked");
        drain_input(&mut conn, 5);

        // Parking a forgotten connection does not bring it back: it is closed.
        assert!(matches!(set.park(conn), Parking::Parked));
        assert_eq!(set.len(), 1);
        assert_eq!(stats.get(Gauge::Idle), 1);
        assert_closed(&mut client);

        next_client.write_all(b"x").unwrap();
        let next = take(&set, WAIT).expect("the new connection");
        assert_eq!(next.peer.port(), port(&next_client));
    }

    #[test]
    fn forget_after_close_and_a_stale_ticket_spares_the_next_connection() {
        let (set, stats) = new_set();
        let listener = loopback();
        let (mut first_client, first) = pair(&listener);
        set.admit(first, true).unwrap();
        first_client.write_all(b"x").unwrap();
        let mut first = take(&set, WAIT).unwrap();
        drain_input(&mut first, 1);
        let ticket = first.ticket.unwrap();
        drop(first); // the worker closes it...
        set.forget(ticket); // ...then forgets it
        assert_closed(&mut first_client);
        assert_eq!(set.len(), 0);
        assert!(take(&set, Duration::from_millis(20)).is_none());

        // The next connection may reuse the place; the old ticket no longer names it.
        let (mut next_client, next) = pair(&listener);
        set.admit(next, false).unwrap();
        set.forget(ticket);
        set.forget(ticket);
        assert_eq!(set.len(), 1);
        assert_eq!(stats.get(Gauge::Idle), 1);
        next_client.write_all(b"y").unwrap();
        let next = take(&set, WAIT).expect("a stale ticket removed nothing");
        assert_eq!(next.peer.port(), port(&next_client));
        assert_ne!(next.ticket, Some(ticket), "a ticket of its own");
        assert_eq!(stats.get(Gauge::Idle), 0);
    }

    #[test]
    fn reports_a_peer_that_closed_its_side() {
        let (set, _stats) = new_set();
        let listener = loopback();
        let (mut open_client, open) = pair(&listener);
        let (mut closing_client, closing) = pair(&listener);
        set.admit(open, true).unwrap();
        set.admit(closing, true).unwrap();

        open_client.write_all(b"GET").unwrap();
        let (conn, hung_up) = set.take_ready(WAIT).expect("input");
        assert_eq!(conn.peer.port(), port(&open_client));
        assert!(!hung_up, "still open");

        closing_client.write_all(b"GET").unwrap();
        closing_client.shutdown(std::net::Shutdown::Write).unwrap();
        // The two writes may be reported apart: wait for the report with the half-close.
        let deadline = Instant::now() + WAIT;
        let mut conn = None;
        while conn.is_none() {
            assert!(Instant::now() < deadline, "no report of the half-close");
            match set.take_ready(WAIT) {
                Some((c, true)) => conn = Some(c),
                Some((c, false)) => drop(set.park(c)),
                None => {}
            }
        }
        assert_eq!(conn.unwrap().peer.port(), port(&closing_client));
    }

    #[test]
    fn sealed_by_take_all_gives_parked_connections_back() {
        let (set, stats) = new_set();
        let listener = loopback();
        let (mut client, conn) = pair(&listener);
        set.admit(conn, true).unwrap();
        client.write_all(b"GET").unwrap();
        let conn = take(&set, WAIT).expect("taken");

        assert!(set.take_all().is_empty(), "nothing parked");
        let conn = match set.park(conn) {
            Parking::Sealed(conn) => conn,
            _ => panic!("parked in a set that was handed over"),
        };
        assert_eq!(conn.peer.port(), port(&client));
        assert!(set.is_empty());
        assert_eq!(stats.get(Gauge::Idle), 0);
    }

    /// Two workers asleep in `epoll_wait`, two connections getting input at once: the kernel
    /// often reports both to the first worker, which takes one and lists the other; the
    /// other worker must be woken for it. Repeated, since the kernel may also report them
    /// apart (then nothing is listed).
    #[test]
    fn a_connection_left_on_the_ready_list_wakes_a_sleeping_worker() {
        let (set, _stats) = new_set();
        let listener = loopback();
        for _round in 0..50 {
            let (mut a, conn_a) = pair(&listener);
            let (mut b, conn_b) = pair(&listener);
            set.admit(conn_a, true).unwrap();
            set.admit(conn_b, true).unwrap();
            let started = Instant::now();
            let taken: Vec<_> = std::thread::scope(|s| {
                let takers: Vec<_> = (0..2).map(|_| s.spawn(|| take(&set, FOREVER))).collect();
                wait_until("both workers sleep", || set.sleepers() == 2);
                a.write_all(b"x").unwrap();
                b.write_all(b"x").unwrap();
                takers.into_iter().map(|t| t.join().unwrap()).collect()
            });
            assert!(started.elapsed() < WAIT, "woken, not timed out");
            let mut ports: Vec<u16> = taken.iter().flatten().map(|c| c.peer.port()).collect();
            ports.sort_unstable();
            let mut expected = vec![port(&a), port(&b)];
            expected.sort_unstable();
            assert_eq!(ports, expected, "each worker took one connection");
            taken
                .into_iter()
                .flatten()
                .for_each(|c| set.forget_any(c.ticket));
        }
    }
}
