//! CAPS v2: the 2004 kernel calls `caps_sys_*`, done in userland over the
//! same transport as the v1 ports: the rendezvous directory, Unix stream
//! sockets, kernel-verified peer credentials, the hello and the frame
//! header of `docs/wire-protocol.md` (protocol version 2, which adds the
//! `Dispose` and `Gen` frames).
//!
//! * A service `(NAME, UID, GID)` is the socket `BASE/sys/NAME,UID,GID`
//!   (`-` for a -1 uid or gid), mode 0666: one flat namespace for every
//!   user; who may connect is decided by the service from the peer's
//!   credentials and the `CAPF_*` flags of both sides.
//! * Entries are small per-process ids (1, 2, ...) in a table guarded by
//!   one mutex. The calls are blocking system-call-like functions: they
//!   never touch the LWKT scheduler or event loop, so they work in plain
//!   programs; a waiting call sleeps in `poll(2)` with the mutex released
//!   and blocks the whole calling kernel thread.
//! * A service accepts connections and reads requests while one of its
//!   calls runs (`caps_sys_get`/`caps_sys_wait` in practice), or while a
//!   client of the same process connects.
//! * `fork()`: a `pthread_atfork` child handler turns the child's entries
//!   into placeholders (`CAPT_FORKED`) and closes their sockets.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::errno::Errno;
use crate::abi::{CAPS_MAXINPROG, caps_cred, caps_msg_state_t};
use crate::cpu::{
    PROBE_SPIN_MAX_NS, SOCK_SPIN_MIN_NS, probe_spin, sock_spin, sock_spin_slept, yield_briefly,
};

mod client;
mod guard;
mod names;
mod service;
mod table;
mod watch;

#[cfg(test)]
mod held_tests;

pub use client::client;
pub use names::check_name;
pub(in crate::caps) use names::parse_node;
use service::pollfd;

use super::shm::Probe;
pub use service::service;
pub(super) use table::register_handlers;
use table::{Entry, Kind, lock};

/// Largest message `caps_sys_put` or `caps_sys_reply` takes (the man
/// page's 128 KB).
pub const MAX_MSG: usize = 128 * 1024;
/// Un-replied requests a client may have: a put fails with `ENOBUFS`
/// while more than this many are outstanding (so 129 can be).
const MAX_INPROG: usize = CAPS_MAXINPROG as usize;
/// Requests one connection may have at the server (queued, held or
/// replied and not yet disposed) before the server calls it a protocol
/// violation: the client's own limit plus one.
const MAX_AT_SERVER: usize = MAX_INPROG + 1;
/// While waiting for a service to appear, re-scan at least this often
/// (inotify normally wakes the wait at once).
const WAITSVC_POLL_MS: i32 = 1000;

/// A service whose rings are awake and that is not told by a poll that
/// an event came looks at its epoll set (new connections, sockets) every
/// this many reads at first, and then, while its looks find nothing, at
/// ever longer intervals up to `ACCEPT_EVERY_MAX` reads (see
/// `Service::accept_due`; a look costs an `epoll_wait`, and a wait that
/// polls sees the events anyway).
const ACCEPT_EVERY: u32 = 8;
const ACCEPT_EVERY_MAX: u32 = 256;

// ---- the calls -----------------------------------------------------------

/// What `caps_sys_get`/`caps_sys_wait` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Got {
    /// The whole message's size (it stays queued when larger than the
    /// buffer).
    pub size: usize,
    pub id: i64,
    pub state: caps_msg_state_t,
}

/// `caps_sys_close`.
pub fn close(id: i32) -> Result<(), Errno> {
    let mut t = lock();
    let mut e = t.entries.remove(&id).ok_or(Errno::EINVAL)?;
    match &mut e.kind {
        Kind::Service(s) => s.close(),
        Kind::Client(c) => c.send_owed(),
        Kind::Forked => {}
    }
    e.signal();
    Ok(())
}

/// `caps_sys_put`: send `data` as a request; returns its message id.
pub fn put(id: i32, data: &[u8]) -> Result<i64, Errno> {
    if data.len() > MAX_MSG {
        return Err(Errno::EMSGSIZE);
    }
    with_entry_sending(id, |e| match &mut e.kind {
        Kind::Client(c) => c.put(data),
        Kind::Service(_) => Err(Errno::EINVAL),
        Kind::Forked => Err(Errno::ENOTCONN),
    })
}

/// Run `f` on entry `id` after reading what has arrived for it, then wake
/// other waiters if that queued something.
fn with_entry<T>(id: i32, f: impl FnOnce(&mut Entry) -> Result<T, Errno>) -> Result<T, Errno> {
    let mut t = lock();
    let e = t.get(id)?;
    e.pump(true);
    let r = f(e);
    e.settle();
    r
}

/// [`with_entry`] without reading first, for the calls that only send
/// (`put`, `reply`): a dead peer shows in the send, and whatever arrived
/// is read by the next call that looks for it. Saves a system call or two
/// per round trip.
fn with_entry_sending<T>(
    id: i32,
    f: impl FnOnce(&mut Entry) -> Result<T, Errno>,
) -> Result<T, Errno> {
    let mut t = lock();
    let e = t.get(id)?;
    let r = f(e);
    e.settle();
    r
}

/// `caps_sys_reply`: answer request `msgid` with `data`.
pub fn reply(id: i32, data: &[u8], msgid: i64) -> Result<(), Errno> {
    if data.len() > MAX_MSG {
        return Err(Errno::EMSGSIZE);
    }
    with_entry_sending(id, |e| match &mut e.kind {
        Kind::Service(s) => s.reply(msgid, data),
        Kind::Client(_) => Err(Errno::EINVAL),
        Kind::Forked => Err(Errno::ENOTCONN),
    })
}

/// `caps_sys_get` (`block` false: `EAGAIN` when nothing is there) and
/// `caps_sys_wait` (`block` true: sleep until something is, `EINTR` on
/// a signal).
pub fn get(
    id: i32,
    buf: &mut [u8],
    mut cred: Option<&mut caps_cred>,
    block: bool,
) -> Result<Got, Errno> {
    // Taken when the first look found nothing.
    let mut set: Option<PollSet> = None;
    // The entry we sleep on, once we did.
    let mut slept_on: Option<u64> = None;
    // The last poll looked at the sockets and saw something (not only at
    // the rings): read them all. The first look reads the rings, and the
    // sockets of connections not in shared memory.
    let mut sockets_ready = false;
    // A service sleeps at most until a connection's hello is due.
    let mut due: Option<Instant>;
    loop {
        let wake = {
            let mut t = lock();
            let e = t.get(id)?;
            if let Some(serial) = slept_on {
                if e.serial != serial {
                    // Closed while we slept (and the id reused).
                    return Err(Errno::EINVAL);
                }
                e.waiters -= 1;
            }
            // What an earlier read queued comes first; the sockets are
            // read only when nothing is queued (a system call saved per
            // message that arrived with another).
            let mut got = e.take(buf, cred.as_deref_mut())?;
            if got.is_none() {
                // Nothing to take: a client's owed disposes go out now
                // (with the write that ends the pump).
                e.push_owed();
                // A client's last look before EAGAIN reads its socket too:
                // no poll will tell it that something came there (a frame
                // behind a marker, or the frames a service sends on the
                // socket once it detached the region: without this a
                // client that only polls never saw them).
                let last_look = !block && matches!(e.kind, Kind::Client(_));
                e.pump(std::mem::take(&mut sockets_ready) || last_look);
                e.settle();
                got = e.take(buf, cred.as_deref_mut())?;
            }
            if let Some(g) = got {
                e.settle();
                // Another thread asleep on another client may wait for a
                // service that needs this dispose first: none is owed
                // while one sleeps (it went to sleep before this one
                // was owed, so its own flush did not send it). (A thread
                // asleep on a service waits for its clients, as it
                // would for any client that stays out of the library.)
                if t.entries.len() > 1
                    && t.entries
                        .values()
                        .any(|x| x.waiters > 0 && matches!(x.kind, Kind::Client(_)))
                    && let Ok(e) = t.get(id)
                {
                    e.send_owed();
                    e.settle();
                }
                return Ok(g);
            }
            // Frames a service read into a connection's buffer are seen
            // by no poll: read them before an EAGAIN or a sleep.
            if let Kind::Service(s) = &e.kind
                && s.reads_pending()
            {
                slept_on = None;
                continue;
            }
            match &e.kind {
                Kind::Client(c) if c.conn.dead => return Err(Errno::ENOTCONN),
                Kind::Forked => return Err(Errno::ENOTCONN),
                _ if !block => return Err(Errno::EAGAIN),
                _ => {}
            }
            // About to sleep: what other clients owe goes out first.
            if t.entries.len() > 1 {
                t.send_owed();
            }
            let e = t.get(id)?;
            due = None;
            let PollSet { fds, probes } = set.get_or_insert_with(PollSet::take);
            fds.clear();
            probes.clear();
            match &mut e.kind {
                Kind::Service(s) => {
                    s.poll_fds(fds, probes);
                    due = s.hello_due();
                }
                Kind::Client(c) => {
                    let out = if c.conn.wants_out() { libc::POLLOUT } else { 0 };
                    fds.push(pollfd(c.conn.raw(), libc::POLLIN | out));
                    probes.extend(c.conn.probe());
                }
                Kind::Forked => {}
            }
            // Nothing to take: no other waiter is owed a wakeup either.
            e.drain();
            e.waiters += 1;
            slept_on = Some(e.serial);
            e.wake.clone()
        };
        // Holding `wake` keeps the eventfd open while we sleep on it.
        let wake = wake.ok_or(Errno::ENOTCONN)?;
        // (Taken above already.)
        let PollSet { fds, probes } = set.get_or_insert_with(PollSet::take);
        fds.push(pollfd(wake.as_raw_fd(), libc::POLLIN));
        let (r, polled) = poll_adaptive(fds, probes, due);
        sockets_ready = polled;
        if r < 0 {
            // A signal gives EINTR, as the kernel's interruptible sleep did.
            let e = Errno::last();
            if let Ok(en) = lock().get(id)
                && Some(en.serial) == slept_on
            {
                en.waiters -= 1;
            }
            return Err(e);
        }
    }
}

/// What a `get` that found nothing watches: kept per thread between
/// calls, so that a wait allocates nothing once its thread waited before.
/// The probes are dropped at the end of each call (they keep rings
/// mapped).
struct PollSet {
    fds: Vec<libc::pollfd>,
    probes: Vec<Probe>,
}

thread_local! {
    static POLL_SET: std::cell::Cell<(Vec<libc::pollfd>, Vec<Probe>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

// `take` and `drop` are kept out of line: inlined, the thread-local's
// address (a `__tls_get_addr` call in a shared library) was computed at the
// entry of every `get`, also of the many that never poll.
impl PollSet {
    /// The calling thread's (empty; new if the thread is exiting).
    #[inline(never)]
    fn take() -> PollSet {
        let (fds, probes) = POLL_SET.try_with(|c| c.take()).unwrap_or_default();
        PollSet { fds, probes }
    }
}

impl Drop for PollSet {
    #[inline(never)]
    fn drop(&mut self) {
        let mut fds = std::mem::take(&mut self.fds);
        let mut probes = std::mem::take(&mut self.probes);
        fds.clear();
        probes.clear();
        // Dropped here instead when the thread is exiting.
        let _ = POLL_SET.try_with(|c| c.set((fds, probes)));
    }
}

/// How long a blocking `get` polls before it sleeps, in ns: adaptive as
/// the LWKT cpus' socket polling (`crate::cpu::SOCK_SPIN_MAX_NS`): a peer
/// on another core answers in microseconds, while a sleep and its wakeup
/// cost tens of microseconds on a virtual machine.
static SPIN_NS: AtomicU32 = AtomicU32::new(SOCK_SPIN_MIN_NS);

/// The spin on the rings before that (`crate::cpu::probe_spin`).
static PROBE_SPIN_NS: AtomicU32 = AtomicU32::new(PROBE_SPIN_MAX_NS);

/// On an oversubscribed machine `sock_spin` does not spin, and a wait
/// would sleep at once; but a peer that shares the core and is runnable
/// (both ends of a pipelined connection on one core) answers during one
/// `sched_yield`, for the price of that call instead of a sleep, its
/// wakeup, and the peer's doorbell write. So the wait yields once before
/// it sleeps, as long as that pays: after a yield that found nothing
/// (the peer is asleep, elsewhere, or slow) the next 1, 2, 4, ...
/// [`YIELD_BACKOFF_MAX`] waits sleep at once, and a yield that found
/// something resets that. An idle wait therefore yields once, then
/// sleeps. A yield that let another task run a time slice
/// (`cpu::yield_briefly` false) counts as a miss even when the peer
/// answered meanwhile: on an oversubscribed machine the core is mostly
/// shared with such tasks, and each yield gave one of them 1-3 ms
/// (measured beside three busy processes: 250-820 yields of 1.8-3 ms
/// each per 100,000 replies, a third of the run's time).
struct YieldGate {
    /// Waits still to skip the yield.
    skip: AtomicU32,
    /// How many the next miss makes skip.
    backoff: AtomicU32,
}

/// Most waits a miss makes skip.
const YIELD_BACKOFF_MAX: u32 = 64;

static YIELD_GATE: YieldGate = YieldGate::new();

impl YieldGate {
    const fn new() -> YieldGate {
        YieldGate {
            skip: AtomicU32::new(0),
            backoff: AtomicU32::new(1),
        }
    }

    /// Should this wait yield before it sleeps?
    fn pays(&self) -> bool {
        let skip = self.skip.load(Ordering::Relaxed);
        if skip > 0 {
            self.skip.store(skip - 1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// What the yield [`YieldGate::pays`] allowed found, and whether it
    /// came back briefly (`cpu::yield_briefly`).
    fn paid(&self, found: bool, brief: bool) {
        if found && brief {
            self.backoff.store(1, Ordering::Relaxed);
        } else {
            let b = self.backoff.load(Ordering::Relaxed);
            self.skip.store(b, Ordering::Relaxed);
            self.backoff
                .store((b * 2).min(YIELD_BACKOFF_MAX), Ordering::Relaxed);
        }
    }
}

/// `poll(fds)` until something is ready (there, or in the rings the
/// `probes` watch) or `until` passes, after polling them (with
/// `sched_yield`, so a peer on the same core runs first) for up to the
/// adaptive budget. The budget doubles after a poll that found something,
/// halves after one that did not, and grows back to twice any sleep
/// shorter than the maximum. Before it sleeps, it tells the rings' writers
/// to ring (`Probe::sleep`). Returns `poll`'s result and whether it came
/// from the descriptors (false: a ring has something).
fn poll_adaptive(
    fds: &mut [libc::pollfd],
    probes: &[Probe],
    until: Option<Instant>,
) -> (i32, bool) {
    let n = fds.len() as libc::nfds_t;
    if !probes.is_empty() {
        let mut b = PROBE_SPIN_NS.load(Ordering::Relaxed);
        let found = probe_spin(&mut b, || probes.iter().any(Probe::ready));
        PROBE_SPIN_NS.store(b, Ordering::Relaxed);
        if found {
            return (1, false);
        }
    }
    let mut budget = SPIN_NS.load(Ordering::Relaxed);
    let mut polls = 0u32;
    let mut from_fds = false;
    let r = sock_spin(&mut budget, || {
        if probes.iter().any(Probe::ready) {
            return 1;
        }
        // With rings to watch, the descriptors (a system call) are looked
        // at every few times only.
        polls += 1;
        if !probes.is_empty() && !polls.is_multiple_of(4) {
            return 0;
        }
        // SAFETY: `fds` is a valid array of `n` pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), n, 0) };
        from_fds = r != 0;
        r
    });
    if r != 0 {
        SPIN_NS.store(budget, Ordering::Relaxed);
        return (r, from_fds);
    }
    // `sock_spin` made no look: the machine is oversubscribed.
    if polls == 0 && YIELD_GATE.pays() {
        let brief = yield_briefly();
        let r = if probes.is_empty() {
            // SAFETY: `fds` is a valid array of `n` pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), n, 0) }
        } else {
            i32::from(probes.iter().any(Probe::ready))
        };
        YIELD_GATE.paid(r != 0, brief);
        if r != 0 {
            return (r, probes.is_empty());
        }
    }
    for (i, p) in probes.iter().enumerate() {
        if !p.sleep() {
            probes[..i].iter().for_each(Probe::woke);
            SPIN_NS.store(budget, Ordering::Relaxed);
            return (1, false);
        }
    }
    let t0 = Instant::now();
    let timeout = until.map_or(-1, |t| {
        let ms = t.saturating_duration_since(t0).as_millis() + 1;
        ms.min(i32::MAX as u128) as i32
    });
    // SAFETY: `fds` is a valid array of `n` pollfds.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout) };
    probes.iter().for_each(Probe::woke);
    if r > 0 {
        sock_spin_slept(&mut budget, t0);
    }
    SPIN_NS.store(budget, Ordering::Relaxed);
    (r, r > 0)
}

/// `caps_sys_setgen`: set a service's generation; its clients see it.
pub fn setgen(id: i32, generation: i64) -> Result<(), Errno> {
    with_entry(id, |e| match &mut e.kind {
        Kind::Service(s) => {
            s.setgen(generation);
            Ok(())
        }
        Kind::Client(_) => Err(Errno::EINVAL),
        Kind::Forked => Err(Errno::ENOTCONN),
    })
}

/// `caps_sys_getgen`: the generation of a client's service.
pub fn getgen(id: i32) -> Result<i64, Errno> {
    with_entry(id, |e| match &mut e.kind {
        Kind::Client(c) => Ok(c.generation),
        Kind::Service(_) => Err(Errno::EINVAL),
        Kind::Forked => Err(Errno::ENOTCONN),
    })
}

/// `caps_sys_abort`: not implemented (as in the 2004 kernel); a known id
/// gives `CAPS_ABORT_NOTIMPL`.
pub fn abort(id: i32) -> Result<i32, Errno> {
    let mut t = lock();
    t.get(id)?;
    Ok(crate::abi::CAPS_ABORT_NOTIMPL)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The waits that yield before sleeping on an oversubscribed machine:
    /// all while yields find something; after misses, 1, 2, 4, ... up to
    /// `YIELD_BACKOFF_MAX` waits in a row do not.
    #[test]
    fn yields_back_off_after_misses() {
        let g = YieldGate::new();
        for _ in 0..3 {
            assert!(g.pays());
            g.paid(true, true);
        }
        for skip in [1, 2, 4, 8, 16, 32, 64, 64] {
            assert!(g.pays());
            g.paid(false, true);
            for _ in 0..skip {
                assert!(!g.pays());
            }
        }
        assert!(g.pays());
        g.paid(true, true);
        assert!(g.pays());
        g.paid(false, true);
        assert!(!g.pays());
        assert!(g.pays());
    }

    /// A yield after which the peer's answer was there, but that let
    /// another task run a slice first, backs off as a miss does.
    #[test]
    fn a_slow_yield_backs_off_though_it_found() {
        let g = YieldGate::new();
        assert!(g.pays());
        g.paid(true, false);
        assert!(!g.pays());
        assert!(g.pays());
        g.paid(true, false);
        assert!(!g.pays());
        assert!(!g.pays());
        assert!(g.pays());
        g.paid(true, true);
        assert!(g.pays());
    }

    /// The `accept` looks of service `id`, and its connections.
    fn looks(id: i32) -> (u64, usize) {
        let mut t = lock();
        match &t.get(id).unwrap().kind {
            Kind::Service(s) => (s.accept_looks, s.conns.len()),
            _ => unreachable!(),
        }
    }

    /// A service whose reads find nothing does not look for a connection
    /// at every read (a failing `accept4` each), and still takes one that
    /// is pending, within `ACCEPT_EVERY_MAX` reads, though no poll told
    /// it.
    #[test]
    fn a_quiet_service_looks_for_connections_ever_less_often() {
        let dir = rendezvous_dir();
        let id = service(b"acceptlooks", u32::MAX, u32::MAX, 0).unwrap();
        let mut buf = [0u8; 64];
        let reads = 2000;
        for _ in 0..reads {
            assert_eq!(get(id, &mut buf, None, false), Err(Errno::EAGAIN));
        }
        let (n, conns) = looks(id);
        assert_eq!(conns, 0);
        // 1 + 2000 / 9 before; now 1 + about log2(256 / 8) + 2000 / 257.
        assert!(n < 20, "{n} accept looks in {reads} reads");
        let node = std::fs::read_dir(dir.join("sys"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains("acceptlooks"))
            .unwrap();
        let _peer = std::os::unix::net::UnixStream::connect(&node).unwrap();
        for _ in 0..=ACCEPT_EVERY_MAX {
            let _ = get(id, &mut buf, None, false);
        }
        assert_eq!(looks(id).1, 1);
        close(id).unwrap();
    }

    /// How often service `id`'s pumps read each connection, by key.
    fn visits(id: i32) -> Vec<(u64, u64)> {
        let mut t = lock();
        match &t.get(id).unwrap().kind {
            Kind::Service(s) => s.conns.iter().map(|(k, c)| (*k, c.visits)).collect(),
            _ => unreachable!(),
        }
    }

    /// Issue 17: a service's reads and waits cost nothing per idle
    /// connection: while one client makes round trips, the pumps read
    /// none of the connections that send nothing (before, every pump
    /// read every connection's socket).
    #[test]
    fn a_service_does_not_read_idle_connections() {
        let _dir = rendezvous_dir();
        let any = crate::abi::CAPF_ANYCLIENT;
        let sid = service(b"idlereads", u32::MAX, u32::MAX, any).unwrap();
        let idle: Vec<i32> = (0..16)
            .map(|_| client(b"idlereads", u32::MAX, u32::MAX, any).unwrap())
            .collect();
        let cid = client(b"idlereads", u32::MAX, u32::MAX, any).unwrap();
        let round_trip = |i: u8| {
            let mut buf = [0u8; 64];
            let m = put(cid, &[i; 8]).unwrap();
            let g = loop {
                let g = get(sid, &mut buf, None, true).unwrap();
                if g.state == crate::abi::CAPMS_REQUEST {
                    break g;
                }
            };
            reply(sid, &[i; 8], g.id).unwrap();
            assert_eq!(get(cid, &mut buf, None, true).unwrap().id, m);
        };
        // Every hello is read by now.
        round_trip(0);
        let before = visits(sid);
        assert_eq!(before.len(), idle.len() + 1);
        // The active client connected last: its key is the highest.
        let idle_reads = |v: &[(u64, u64)]| v[..idle.len()].iter().map(|(_, n)| n).sum::<u64>();
        let active = |v: &[(u64, u64)]| v[idle.len()].1;
        for i in 1..=20 {
            round_trip(i);
        }
        let after = visits(sid);
        assert!(active(&after) > active(&before));
        assert_eq!(
            idle_reads(&after),
            idle_reads(&before),
            "{before:?} {after:?}"
        );
        for id in idle.into_iter().chain([cid, sid]) {
            close(id).unwrap();
        }
    }

    /// While a connection's ring is awake, reads do not wait for a
    /// poll to look at the sockets (the ring is read without a system
    /// call); the epoll set is still looked at, as a listener was, within
    /// `ACCEPT_EVERY_MAX` reads: a request that comes on another
    /// connection's socket (a first frame: its region's attach record
    /// comes there) is not starved.
    #[test]
    fn a_socket_is_read_while_another_connections_ring_is_awake() {
        let _dir = rendezvous_dir();
        let any = crate::abi::CAPF_ANYCLIENT;
        let sid = service(b"ringandsocket", u32::MAX, u32::MAX, any).unwrap();
        let a = client(b"ringandsocket", u32::MAX, u32::MAX, any).unwrap();
        let b = client(b"ringandsocket", u32::MAX, u32::MAX, any).unwrap();
        let mut buf = [0u8; 64];
        // A's round trip wakes its rings (for a second or two).
        let m = put(a, &[1; 8]).unwrap();
        let g = get(sid, &mut buf, None, true).unwrap();
        reply(sid, &[1; 8], g.id).unwrap();
        assert_eq!(get(a, &mut buf, None, true).unwrap().id, m);
        put(b, &[2; 8]).unwrap();
        let mut got = None;
        for _ in 0..=ACCEPT_EVERY_MAX {
            match get(sid, &mut buf, None, false) {
                Ok(g) if g.state == crate::abi::CAPMS_REQUEST => {
                    got = Some(buf[0]);
                    break;
                }
                Ok(_) | Err(Errno::EAGAIN) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(got, Some(2));
        for id in [a, b, sid] {
            close(id).unwrap();
        }
    }

    /// More connections with something to read than one `epoll_wait`
    /// takes: every request is read, and the read ends (the level-
    /// triggered set reports the still-ready ones again, behind the
    /// others: taking events until fewer came than asked never ended).
    #[test]
    fn more_ready_connections_than_one_epoll_wait_takes() {
        let _dir = rendezvous_dir();
        let any = crate::abi::CAPF_ANYCLIENT;
        let sid = service(b"manyready", u32::MAX, u32::MAX, any).unwrap();
        let clients: Vec<i32> = (0..150)
            .map(|_| client(b"manyready", u32::MAX, u32::MAX, any).unwrap())
            .collect();
        for (i, &c) in clients.iter().enumerate() {
            put(c, &(i as u32).to_le_bytes()).unwrap();
        }
        let mut buf = [0u8; 64];
        let mut seen = vec![false; clients.len()];
        for _ in 0..clients.len() {
            let g = get(sid, &mut buf, None, true).unwrap();
            assert_eq!(g.state, crate::abi::CAPMS_REQUEST);
            let i = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
            assert!(!std::mem::replace(&mut seen[i], true));
        }
        for id in clients.into_iter().chain([sid]) {
            close(id).unwrap();
        }
    }

    /// The rendezvous directory of these tests (LIBCAPS_DIR), set once.
    pub(super) fn rendezvous_dir() -> std::path::PathBuf {
        static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        DIR.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("libcaps-sys-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            // SAFETY: no other unit test of the library reads or sets the
            // environment's LIBCAPS_DIR (the rendezvous directory), and
            // these set it once.
            unsafe { std::env::set_var("LIBCAPS_DIR", &dir) };
            dir
        })
        .clone()
    }

    /// Payload buffers kept by client `cid`'s connection, and by the
    /// connections of service `sid`.
    fn spare_bodies(cid: i32, sid: i32) -> (usize, usize) {
        let mut t = lock();
        let c = match &t.get(cid).unwrap().kind {
            Kind::Client(c) => c.conn.spare_bodies(),
            _ => unreachable!(),
        };
        let s = match &t.get(sid).unwrap().kind {
            Kind::Service(s) => s.conns.values().map(|c| c.link.tx.spare_bodies()).sum(),
            _ => unreachable!(),
        };
        (c, s)
    }

    /// Issue 17: both ends of a v2 connection reuse the payload buffers
    /// of the messages taken while requests are outstanding, and keep
    /// none once nothing is (an idle connection holds no buffers).
    #[test]
    fn message_buffers_are_reused_while_busy_and_given_back_when_quiet() {
        let _dir = rendezvous_dir();
        let any = crate::abi::CAPF_ANYCLIENT;
        let sid = service(b"bodyreuse", u32::MAX, u32::MAX, any).unwrap();
        let cid = client(b"bodyreuse", u32::MAX, u32::MAX, any).unwrap();
        let mut buf = [0u8; 64];
        let ids: Vec<i64> = (0..3u8).map(|i| put(cid, &[i; 64]).unwrap()).collect();
        let mut sids = Vec::new();
        for _ in 0..3 {
            let g = get(sid, &mut buf, None, true).unwrap();
            assert_eq!(g.state, crate::abi::CAPMS_REQUEST);
            sids.push(g.id);
        }
        assert!(
            spare_bodies(cid, sid).1 >= 2,
            "{:?}",
            spare_bodies(cid, sid)
        );
        for &s in &sids {
            reply(sid, &[7; 64], s).unwrap();
        }
        for (i, &want) in ids.iter().enumerate() {
            let g = get(cid, &mut buf, None, true).unwrap();
            assert_eq!(g.id, want);
            let (c, _) = spare_bodies(cid, sid);
            if i < 2 {
                assert!(c >= 1, "client keeps {c} after reply {i}");
            } else {
                assert_eq!(c, 0, "client quiet");
            }
        }
        // The disposes reach the service: its connection is quiet.
        for _ in 0..3 {
            let g = get(sid, &mut buf, None, true).unwrap();
            assert_eq!(g.state, crate::abi::CAPMS_DISPOSE);
        }
        assert_eq!(spare_bodies(cid, sid), (0, 0));
        close(cid).unwrap();
        close(sid).unwrap();
    }
}
