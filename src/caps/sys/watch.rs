//! What a v2 service watches, kept up to date as connections come and
//! go, so that neither a wait nor a read costs anything per idle
//! connection (issue 17): an epoll set of the listener and every
//! connection's socket (level-triggered, as the v1 event loop's; a wait
//! sleeps in `poll` on its descriptor and the entry's wake eventfd), the
//! connections whose rings are awake (read at every pump, told to ring
//! before a wait sleeps: a dormant ring's writer rings anyway, see
//! `shmlink::Link::quiet`), those without a complete hello, and those
//! whose input is not watched because they may not read (the budget).
//!
//! A pump reads only the connections with an event since the last one,
//! with awake rings, whose turn was cut short, or whose pause ended; in
//! key order, as the walk of every connection did. A wait does not sleep
//! while a turn was cut short or a pause ended: what those connections
//! read before waits in their buffers, where no poll sees it.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::service::Service;
use crate::caps::errno::Errno;
use crate::caps::shm::Probe;

/// The epoll key of the listener (connections are numbered from 1).
const LISTENER: u64 = 0;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 64;

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;

pub(super) struct Watch {
    ep: OwnedFd,
    events: Vec<libc::epoll_event>,
    /// To read at the next pump: an event came, a turn was cut short, a
    /// pause ended, or the connection is new.
    ready: Vec<u64>,
    /// The walk of the current pump (`ready` and `rings`, in key order).
    visit: Vec<u64>,
    /// Connections whose rings are awake.
    pub(super) rings: BTreeSet<u64>,
    /// Connections without a complete hello.
    pub(super) hello: BTreeSet<u64>,
    /// Connections that may not read: their input is not watched.
    paused: BTreeSet<u64>,
}

impl Watch {
    /// A set watching `listener`.
    pub(super) fn new(listener: i32) -> Result<Watch, Errno> {
        // SAFETY: plain epoll_create1(2) call.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(Errno::last());
        }
        // SAFETY: a new descriptor nobody else owns.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        let w = Watch {
            ep,
            events: Vec::new(),
            ready: Vec::new(),
            visit: Vec::new(),
            rings: BTreeSet::new(),
            hello: BTreeSet::new(),
            paused: BTreeSet::new(),
        };
        w.ctl(libc::EPOLL_CTL_ADD, listener, IN, LISTENER)?;
        Ok(w)
    }

    fn ctl(&self, op: i32, fd: i32, events: u32, key: u64) -> Result<(), Errno> {
        let mut e = libc::epoll_event { events, u64: key };
        // SAFETY: a valid epoll descriptor and event struct.
        if unsafe { libc::epoll_ctl(self.ep.as_raw_fd(), op, fd, &mut e) } != 0 {
            return Err(Errno::last());
        }
        Ok(())
    }

    /// The descriptor a wait polls (readable while an event is pending).
    pub(super) fn raw(&self) -> i32 {
        self.ep.as_raw_fd()
    }
}

impl Service {
    /// Watch new connection `k` (its socket `fd`): read at the next pump.
    pub(super) fn watch_conn(&mut self, k: u64, fd: i32) -> Result<(), Errno> {
        self.w.ctl(libc::EPOLL_CTL_ADD, fd, IN, k)?;
        self.w.hello.insert(k);
        self.w.ready.push(k);
        Ok(())
    }

    /// Stop watching connection `k` (its socket `fd`, still open).
    pub(super) fn unwatch_conn(&mut self, k: u64, fd: i32) {
        // A failure: the socket is closed already (then it left the set).
        let _ = self.w.ctl(libc::EPOLL_CTL_DEL, fd, 0, k);
        self.w.rings.remove(&k);
        self.w.hello.remove(&k);
        self.w.paused.remove(&k);
    }

    /// Take the events pending: the connections they name are read at
    /// the next pump (their sockets too), the listener is looked at.
    /// True if there was one. (Level-triggered: a descriptor still ready
    /// is reported again, behind the others, so the takes are bounded by
    /// the number of descriptors, not by the events coming to an end.)
    pub(super) fn harvest(&mut self) -> bool {
        let mut found = false;
        for _ in 0..=self.conns.len() / EVENTS {
            let w = &mut self.w;
            w.events.clear();
            w.events.reserve(EVENTS);
            // SAFETY: `events` has room for EVENTS entries; no timeout.
            let n = unsafe {
                libc::epoll_wait(w.ep.as_raw_fd(), w.events.as_mut_ptr(), EVENTS as i32, 0)
            };
            if n <= 0 {
                return found;
            }
            found = true;
            // SAFETY: epoll_wait initialized the first `n` entries.
            unsafe { w.events.set_len(n as usize) };
            for e in &w.events {
                let (k, bits) = (e.u64, e.events);
                if k == LISTENER {
                    self.accept_due = true;
                } else if let Some(c) = self.conns.get_mut(&k) {
                    if bits & !OUT != 0 {
                        c.link.tx.input_ready();
                    }
                    w.ready.push(k);
                }
            }
            if (n as usize) < EVENTS {
                break;
            }
        }
        found
    }

    /// Read connection `k` again at the next pump (its turn was cut short).
    pub(super) fn again(&mut self, k: u64) {
        self.w.ready.push(k);
    }

    /// The connections the next pump reads, in key order, into the walk;
    /// paused ones that may read again are among them.
    pub(super) fn start_walk(&mut self) -> usize {
        let (core, conns, w) = (&self.core, &mut self.conns, &mut self.w);
        w.paused.retain(|k| match conns.get_mut(k) {
            Some(c) if core.may_read(&c.link) => {
                c.link.tx.input_ready();
                w.ready.push(*k);
                false
            }
            Some(_) => true,
            None => false,
        });
        w.visit.clear();
        w.visit.append(&mut w.ready);
        w.visit.extend(w.rings.iter().copied());
        w.visit.sort_unstable();
        w.visit.dedup();
        w.visit.len()
    }

    /// Are there connections to read that no poll would tell of? Those
    /// whose turn was cut short or whose pause ended (what they read
    /// waits in their buffers, not in their sockets or rings), and paused
    /// ones that may read again (another's output was written during the
    /// pump's walk, after they were looked at: their input is not
    /// watched). A wait must not sleep then.
    pub(super) fn reads_pending(&self) -> bool {
        !self.w.ready.is_empty()
            || self.w.paused.iter().any(|k| {
                self.conns
                    .get(k)
                    .is_some_and(|c| self.core.may_read(&c.link))
            })
    }

    /// The `i`th connection of the walk.
    pub(super) fn walk(&self, i: usize) -> u64 {
        self.w.visit[i]
    }

    /// After connection `k` was read or written: which sets it is in, and
    /// what its socket is watched for.
    pub(super) fn track(&mut self, k: u64) {
        let Some(c) = self.conns.get_mut(&k) else {
            return;
        };
        let w = &mut self.w;
        if c.link.tx.ring_awake() {
            w.rings.insert(k);
        } else {
            w.rings.remove(&k);
        }
        if c.link.hello_done() {
            w.hello.remove(&k);
        }
        let may_read = self.core.may_read(&c.link);
        if may_read {
            if w.paused.remove(&k) {
                // Its pause ended (its output was written, say): what it
                // had read before waits in its buffer, where no event
                // tells of it.
                c.link.tx.input_ready();
                w.ready.push(k);
            }
        } else {
            w.paused.insert(k);
        }
        let want = (if may_read { IN } else { 0 }) | (if c.link.tx.wants_out() { OUT } else { 0 });
        if want != c.interest && w.ctl(libc::EPOLL_CTL_MOD, c.link.tx.raw(), want, k).is_ok() {
            c.interest = want;
        }
    }

    /// What a wait watches: the epoll set in `fds`, the awake rings of
    /// the connections that may read in `probes`.
    pub(super) fn poll_fds(&mut self, fds: &mut Vec<libc::pollfd>, probes: &mut Vec<Probe>) {
        fds.push(super::service::pollfd(self.w.raw(), libc::POLLIN));
        for k in &self.w.rings {
            if let Some(c) = self.conns.get_mut(k)
                && self.core.may_read(&c.link)
            {
                probes.extend(c.link.tx.probe());
            }
        }
    }
}
