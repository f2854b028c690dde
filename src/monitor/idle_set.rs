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

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::{epoll, poll, PollFd, PollFlags, Timespec};
use slab::Slab;

use crate::dispatcher::Connection;
use crate::stats::{Gauge, Stats};
use crate::worker::has_input;

/// Gives every set a distinct id, so that a ticket names the set it belongs to.
static NEXT_SET_ID: AtomicU64 = AtomicU64::new(1);

/// A connection's place in a set, carried by the connection while a worker owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The set.
    set: u64,
    /// The table key.
    key: usize,
    /// Tells this connection from earlier ones at the same key.
    generation: u32,
}

/// What became of a connection handed to [`IdleSet::park`].
pub enum Parking {
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
    /// Parked entries waiting to send the rest of a response.
    sending: usize,
    /// The set was handed over (restart): nothing more is parked here.
    sealed: bool,
}

/// Connections waiting for input, watched by one epoll instance.
pub struct IdleSet {
    /// This set's id.
    id: u64,
    /// The epoll instance.
    epoll: OwnedFd,
    /// The registered connections.
    table: Mutex<Table>,
    /// Gauges: Queued (fresh connections) and Idle (keep-alive connections).
    stats: Arc<Stats>,
}

impl IdleSet {
    /// An empty set.
    pub fn new(stats: Arc<Stats>) -> io::Result<Self> {
        Ok(IdleSet {
            id: NEXT_SET_ID.fetch_add(1, Ordering::Relaxed),
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            table: Mutex::new(Table {
                slab: Slab::new(),
                generation: 0,
                fresh: 0,
                parked: 0,
                sending: 0,
                sealed: false,
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
    pub fn admit(&self, mut conn: Connection, fresh: bool) -> io::Result<()> {
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
    pub fn park(&self, conn: Connection) -> Parking {
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
        table.sending += usize::from(conn.outbox.is_some());
        self.stats.inc(gauge_of(fresh));
        Place::Parked {
            conn,
            since: Instant::now(),
            fresh,
        }
    }

    /// Forgets a connection its worker closed.
    pub fn forget(&self, ticket: Ticket) {
        let mut table = self.lock();
        let current = table.slab.get(ticket.key).map(|e| e.generation);
        if ticket.set == self.id && current == Some(ticket.generation) {
            table.slab.remove(ticket.key);
        }
    }

    /// Forgets a closed connection, if it was ever admitted.
    pub fn forget_any(&self, ticket: Option<Ticket>) {
        if let Some(ticket) = ticket {
            self.forget(ticket);
        }
    }

    /// Waits up to `timeout` for a parked connection with input and takes it; the flag says
    /// the peer has closed its side (its last bytes may still be buffered).
    pub fn take_ready(&self, timeout: Duration) -> Option<(Connection, bool)> {
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); 1];
        let timeout = Timespec::try_from(timeout).ok()?;
        let (ready, _) = epoll::wait(&self.epoll, &mut events, Some(&timeout)).ok()?;
        let event = *ready.first()?;
        let flags = event.flags;
        let hung_up = flags.intersects(epoll::EventFlags::RDHUP | epoll::EventFlags::HUP);
        let data = event.data.u64();
        let key = usize::try_from(data >> 32).ok()?;
        let mut table = self.lock();
        let entry = table
            .slab
            .get_mut(key)
            .filter(|e| e.generation == data as u32)?;
        match &mut entry.place {
            Place::Owned { pending } => {
                *pending = true;
                None
            }
            Place::Parked { .. } => {
                let owned = Place::Owned { pending: false };
                let place = std::mem::replace(&mut entry.place, owned);
                self.unparked(&mut table, place).map(|conn| (conn, hung_up))
            }
        }
    }

    /// Whether a parked connection has input that no worker has taken yet (the epoll's ready
    /// list is not empty; looking does not consume it).
    pub fn has_ready(&self) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            &self.epoll,
            rustix::event::PollFlags::IN,
        )];
        let now = Timespec::default();
        rustix::event::poll(&mut fds, Some(&now)).is_ok_and(|n| n > 0)
    }

    /// Counts a place that stopped being parked and gives its connection.
    fn unparked(&self, table: &mut Table, place: Place) -> Option<Connection> {
        let Place::Parked { conn, fresh, .. } = place else {
            return None;
        };
        table.parked -= 1;
        table.fresh -= usize::from(fresh);
        table.sending -= usize::from(conn.outbox.is_some());
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
    pub fn expire(&self, timeout: Duration) -> Vec<(Connection, bool)> {
        let now = Instant::now();
        self.remove_parked(|parked, _, conn| match &conn.outbox {
            Some(outbox) => outbox.deadline() <= now && !has_room(&conn.stream),
            None => parked >= timeout || request_overdue(conn, now),
        })
    }

    /// Removes every parked connection, with its freshness, and seals the set: connections
    /// parked later are given back as [`Parking::Sealed`] (restart: they move to the next pool).
    pub fn take_all(&self) -> Vec<(Connection, bool)> {
        self.lock().sealed = true;
        self.remove_parked(|_, _, _| true)
    }

    /// Removes the parked connections that were served before and owe nothing (idle
    /// keep-alive ones).
    pub fn take_idle(&self) -> Vec<Connection> {
        let idle = self.remove_parked(|_, fresh, conn| !fresh && conn.outbox.is_none());
        idle.into_iter().map(|(conn, _)| conn).collect()
    }

    /// How many parked connections were never served (new connections waiting).
    pub fn fresh(&self) -> usize {
        self.lock().fresh
    }

    /// How many parked connections wait to send the rest of a response.
    pub fn sending(&self) -> usize {
        self.lock().sending
    }

    /// How many connections are parked.
    pub fn len(&self) -> usize {
        self.lock().parked
    }

    /// Whether no connection is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// Whether the send buffer has room (a worker will send more when one is free).
fn has_room(stream: &std::net::TcpStream) -> bool {
    let mut fds = [PollFd::new(stream, PollFlags::OUT)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&now)).is_ok_and(|ready| ready > 0)
}

/// Whether a partial request's deadline has passed with nothing more received.
fn request_overdue(conn: &Connection, now: Instant) -> bool {
    let overdue = conn
        .request_deadline
        .is_some_and(|deadline| deadline <= now);
    overdue && !has_input(&conn.stream)
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
