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

use std::cell::UnsafeCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use super::conn::{
    Budget, CANDIDATE_HELLO_MS, Conn, Gate, HELLO_DEADLINE, HELLO_TIMEOUT_MS, ReadEnd, accept,
    errno, handshake, log_hello_drops, read_exact_timeout, set_nonblocking,
};
use super::cred::{Cred, SysAccess};
use super::rendezvous::{self, Errno, Listener};
use super::wire::{FrameKind, HEADER_LEN, Header, Hello, HelloKind, VERSION_SYS};
use crate::abi::{
    CAPF_EXCL, CAPF_NOFORK, CAPF_UFLAGS, CAPF_WAITSVC, CAPMS_DISPOSE, CAPMS_REPLY, CAPMS_REQUEST,
    CAPS_MAXINPROG, CAPS_MAXNAMELEN, caps_cred, caps_msg_state_t,
};
use crate::cpu::{SOCK_SPIN_MIN_NS, sock_spin, sock_spin_slept};
use crate::warn;

mod guard;

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

/// A service that is not told a connection is pending looks every this
/// many reads (see `Svc::accept_due`).
const ACCEPT_EVERY: u32 = 8;

// ---- names -------------------------------------------------------------

/// Check a service name: at most `CAPS_MAXNAMELEN - 1` bytes
/// (`ENAMETOOLONG`), not empty, only `[0-9A-Za-z_.]` (`EINVAL`).
pub fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.len() >= CAPS_MAXNAMELEN as usize {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty()
        || !name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// -1 (`u32::MAX`) means "not registered for this search key".
fn key(id: u32) -> Option<u32> {
    (id != u32::MAX).then_some(id)
}

fn key_text(id: Option<u32>) -> String {
    id.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The socket node name of service `(name, uid, gid)`.
fn node_name(name: &[u8], uid: Option<u32>, gid: Option<u32>) -> String {
    format!(
        "{},{},{}",
        String::from_utf8_lossy(name),
        key_text(uid),
        key_text(gid)
    )
}

/// Parse a node name back: `(name, uid, gid)`.
fn parse_node(file: &[u8]) -> Option<(&[u8], Option<u32>, Option<u32>)> {
    let mut it = file.rsplitn(3, |&c| c == b',');
    let gid = it.next()?;
    let uid = it.next()?;
    let name = it.next()?;
    let num = |b: &[u8]| -> Option<Option<u32>> {
        if b == b"-" {
            return Some(None);
        }
        std::str::from_utf8(b).ok()?.parse::<u32>().ok().map(Some)
    };
    Some((name, num(uid)?, num(gid)?))
}

/// Nodes in `dir` of services matching `(name, uid, gid)`, where a -1
/// `uid`/`gid` is a wildcard, in the order a lookup tries them: those
/// registered for the caller's own uid first, then root's, then the
/// others; the most recently published first within each group.
fn matching_nodes(dir: &Path, name: &[u8], uid: u32, gid: u32) -> Vec<Node> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, Node)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let f = e.file_name();
            let (n, u, g) = parse_node(f.as_bytes())?;
            let keys_match = n == name
                && (uid == u32::MAX || u == Some(uid))
                && (gid == u32::MAX || g == Some(gid));
            if !keys_match {
                return None;
            }
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            Some((
                t,
                Node {
                    path: e.path(),
                    uid: u,
                    gid: g,
                },
            ))
        })
        .collect();
    // SAFETY: plain id query.
    let me = unsafe { libc::geteuid() };
    let rank = |n: &Node| match n.uid {
        Some(u) if u == me => 0,
        Some(0) => 1,
        _ => 2,
    };
    found.sort_by_key(|f| (rank(&f.1), std::cmp::Reverse(f.0)));
    found.into_iter().map(|(_, n)| n).collect()
}

/// A service node found by [`matching_nodes`], with the keys it claims.
struct Node {
    path: PathBuf,
    uid: Option<u32>,
    gid: Option<u32>,
}

// ---- the per-process table ---------------------------------------------

/// A message waiting at a service to be retrieved.
enum Queued {
    Request {
        sid: i64,
        conn: u64,
        client_id: u64,
        data: Vec<u8>,
    },
    /// The client has read the reply to `sid`, or went away.
    Dispose { sid: i64, conn: u64 },
}

/// A request the server retrieved and has not replied to.
struct Held {
    /// `None` once the client went away (its dispose notice is queued).
    conn: Option<u64>,
    client_id: u64,
}

/// The server's side of one client connection.
struct SConn {
    conn: Conn,
    cred: Cred,
    hello_done: bool,
    /// Replies sent, by client id, waiting for the client's dispose.
    replied: HashMap<u64, i64>,
    /// Requests of this connection at the server in any state.
    inflight: usize,
    /// Bytes of its requests queued, not yet taken.
    queued_bytes: usize,
    /// What the service's budget counts for this connection.
    charged: usize,
}

struct Svc {
    listener: Listener,
    access: SysAccess,
    conns: BTreeMap<u64, SConn>,
    next_conn: u64,
    queue: VecDeque<Queued>,
    held: HashMap<i64, Held>,
    next_sid: i64,
    generation: i64,
    /// Creds of connections that went away while notices about them are
    /// still queued.
    gone: HashMap<u64, Cred>,
    /// Something was queued or a connection came since other waiters last
    /// looked (see `Entry::settle`).
    news: bool,
    /// The listener may have a connection pending: accept at the next
    /// read. Set by a poll that saw it readable; otherwise `accept` runs
    /// every `ACCEPT_EVERY` reads (a service that never sleeps in
    /// `caps_sys_wait` still takes new clients), not on every call.
    accept_due: bool,
    accept_skipped: u32,
    /// Connections per peer uid (`conn::Gate`).
    gate: Gate,
    /// Bytes buffered for the connections (`conn::Budget`).
    budget: Budget,
}

struct Cli {
    conn: Conn,
    /// The service's credentials (what a reply was "loaded" by).
    peer: Cred,
    next_id: u64,
    /// Put and not yet answered by a retrieved reply.
    outstanding: HashMap<u64, ()>,
    /// Replies received, not yet retrieved: (id, data, synthesized).
    replies: VecDeque<(u64, Vec<u8>, bool)>,
    generation: i64,
    /// A reply arrived or the connection ended (see `Entry::settle`).
    news: bool,
}

enum Kind {
    Service(Box<Svc>),
    Client(Box<Cli>),
    /// Inherited across `fork()`: every call but close fails `ENOTCONN`.
    Forked,
}

struct Entry {
    flags: i32,
    kind: Kind,
    /// Written when the entry closes, or when one thread's call queued
    /// messages while other threads wait on the entry (they sleep on
    /// sockets whose data that call consumed).
    wake: Option<Arc<OwnedFd>>,
    /// Threads sleeping in `caps_sys_wait` on this entry.
    waiters: usize,
    /// `wake` was written since it was last drained (the drain is a
    /// system call saved when it was not).
    signaled: bool,
    /// Unique for the process's lifetime: a thread that slept on an entry
    /// finds out whether its id now names another one.
    serial: u64,
}

struct Table {
    entries: BTreeMap<i32, Entry>,
    serials: u64,
}

struct Shared {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    table: UnsafeCell<Table>,
}

// SAFETY: `table` is only reached through `Guard`, which holds `mutex`.
unsafe impl Sync for Shared {}

static SHARED: Shared = Shared {
    mutex: UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER),
    table: UnsafeCell::new(Table {
        entries: BTreeMap::new(),
        serials: 0,
    }),
};

/// The `fork()` and `exit()` handlers are registered when the library is
/// loaded (an `.init_array` entry, run before `main` and before any
/// thread): a registration on first use could be in progress in another
/// thread at the moment of a fork, leaving the child waiting for it
/// forever.
#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER_HANDLERS: extern "C" fn() = register_handlers;

/// Also called on first use, for a static link that left the
/// `.init_array` entry out; a flag, not a `Once`, so nothing ever waits.
pub(super) extern "C" fn register_handlers() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the handlers are plain functions that live forever.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
        libc::atexit(unlink_at_exit);
    }
}

fn raw_lock() {
    // SAFETY: a statically initialised mutex, never destroyed.
    unsafe { libc::pthread_mutex_lock(SHARED.mutex.get()) };
}

fn raw_unlock() {
    // SAFETY: called by the thread that locked it (or the only thread of
    // a forked child, which inherited it locked by the prepare handler).
    unsafe { libc::pthread_mutex_unlock(SHARED.mutex.get()) };
}

/// The table, locked.
struct Guard(());

fn lock() -> Guard {
    register_handlers();
    raw_lock();
    Guard(())
}

impl std::ops::Deref for Guard {
    type Target = Table;
    fn deref(&self) -> &Table {
        // SAFETY: the mutex is held while the guard lives.
        unsafe { &*SHARED.table.get() }
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Table {
        // SAFETY: the mutex is held while the guard lives.
        unsafe { &mut *SHARED.table.get() }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        raw_unlock();
    }
}

/// Before `fork()`: hold the table so the child inherits it consistent.
extern "C" fn fork_prepare() {
    raw_lock();
}

extern "C" fn fork_parent() {
    raw_unlock();
}

/// In the child: every entry becomes a placeholder (or disappears with
/// `CAPF_NOFORK`); the inherited sockets are closed so the parent's
/// peers see its connections end when the parent's do.
extern "C" fn fork_child() {
    // SAFETY: the prepare handler locked the mutex; this is the child's
    // only thread.
    let t = unsafe { &mut *SHARED.table.get() };
    t.entries.retain(|_, e| e.flags & CAPF_NOFORK == 0);
    for e in t.entries.values_mut() {
        e.kind = Kind::Forked;
        e.wake = None;
    }
    raw_unlock();
    // The v1 ports too.
    super::conn::after_fork_child();
}

/// At `exit()`: remove the socket nodes of this process's services (a
/// killed process leaves them; lookups skip such dead nodes and the next
/// registration replaces them). Skipped if another thread holds the table.
extern "C" fn unlink_at_exit() {
    // SAFETY: a statically initialised mutex; trylock cannot hang exit().
    if unsafe { libc::pthread_mutex_trylock(SHARED.mutex.get()) } != 0 {
        return;
    }
    // SAFETY: we hold the mutex.
    let t = unsafe { &mut *SHARED.table.get() };
    for e in t.entries.values_mut() {
        if let Kind::Service(s) = &mut e.kind {
            s.close();
        }
    }
    raw_unlock();
}

impl Table {
    fn insert(&mut self, flags: i32, kind: Kind) -> Result<i32, Errno> {
        let id = self.entries.keys().next_back().map_or(1, |k| k + 1);
        let wake = new_eventfd()?;
        self.serials += 1;
        self.entries.insert(
            id,
            Entry {
                flags,
                kind,
                wake: Some(Arc::new(wake)),
                waiters: 0,
                signaled: false,
                serial: self.serials,
            },
        );
        Ok(id)
    }

    fn get(&mut self, id: i32) -> Result<&mut Entry, Errno> {
        self.entries.get_mut(&id).ok_or(Errno::EINVAL)
    }
}

impl Entry {
    /// Read whatever has arrived, as any call on the entry does first.
    fn pump(&mut self) {
        match &mut self.kind {
            Kind::Service(s) => s.pump(),
            Kind::Client(c) => c.pump(),
            Kind::Forked => {}
        }
    }

    /// Take the first message queued for the entry, if any.
    fn take(&mut self, buf: &mut [u8], cred: Option<&mut caps_cred>) -> Result<Option<Got>, Errno> {
        match &mut self.kind {
            Kind::Forked => Err(Errno::ENOTCONN),
            Kind::Service(s) => Ok(s.take(buf, cred)),
            Kind::Client(c) => Ok(c.take(buf, cred)),
        }
    }

    /// After a call changed the entry: if it queued something while other
    /// threads sleep on the entry, wake them to look.
    fn settle(&mut self) {
        let news = match &mut self.kind {
            Kind::Service(s) => std::mem::take(&mut s.news),
            Kind::Client(c) => std::mem::take(&mut c.news),
            Kind::Forked => false,
        };
        if news && self.waiters > 0 {
            self.signal();
        }
    }

    fn signal(&mut self) {
        self.signaled = true;
        if let Some(w) = &self.wake {
            let one: u64 = 1;
            // SAFETY: an 8-byte write to our eventfd.
            unsafe { libc::write(w.as_raw_fd(), (&raw const one).cast(), 8) };
        }
    }

    /// Consume pending wakeups (only when the entry has nothing to take:
    /// then no other waiter is owed one).
    fn drain(&mut self) {
        if !std::mem::take(&mut self.signaled) {
            return;
        }
        if let Some(w) = &self.wake {
            let mut v: u64 = 0;
            // SAFETY: an 8-byte read from our non-blocking eventfd.
            unsafe { libc::read(w.as_raw_fd(), (&raw mut v).cast(), 8) };
        }
    }
}

fn new_eventfd() -> Result<OwnedFd, Errno> {
    // SAFETY: plain eventfd(2) call.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// ---- service -------------------------------------------------------------

/// `caps_sys_service`: register service `(name, uid, gid)`.
pub fn service(name: &[u8], uid: u32, gid: u32, flags: i32) -> Result<i32, Errno> {
    check_name(name)?;
    let flags = flags & CAPF_UFLAGS;
    let me = Cred::of_self();
    if me.uid != 0 {
        if uid != u32::MAX && uid != me.uid {
            return Err(Errno::EPERM);
        }
        if gid != u32::MAX && gid != me.gid && !me.groups.contains(&gid) {
            return Err(Errno::EPERM);
        }
    }
    let dir = rendezvous::open_sys_dir("caps_sys_service")?;
    let node = node_name(name, key(uid), key(gid));
    let path = dir.path.join(&node);
    rendezvous::check_path_len(&path)?;
    let excl = flags & CAPF_EXCL != 0;
    let sys_path = dir.path.clone();
    let listener = rendezvous::listen_in("caps_sys_service", dir, node.as_bytes(), 0o666, || {
        excl && matching_nodes(&sys_path, name, uid, gid)
            .iter()
            .any(|n| rendezvous::is_live(&n.path))
    })?;
    set_nonblocking(listener.fd.as_raw_fd());
    let svc = Svc {
        listener,
        access: SysAccess {
            uid: key(uid),
            gid: key(gid),
            flags,
        },
        conns: BTreeMap::new(),
        next_conn: 1,
        queue: VecDeque::new(),
        held: HashMap::new(),
        next_sid: 1,
        generation: 0,
        gone: HashMap::new(),
        news: false,
        accept_due: true,
        accept_skipped: 0,
        gate: Gate::new(me.uid),
        budget: Budget::new(me.uid),
    };
    let r = lock().insert(flags, Kind::Service(Box::new(svc)));
    if let Err(e) = &r {
        warn!("caps_sys_service", "{}: {}", path.display(), *e);
    }
    r
}

impl Svc {
    /// Accept new connections, read every frame available, write what
    /// is queued. Never blocks.
    fn pump(&mut self) {
        if self.accept_due || self.accept_skipped >= ACCEPT_EVERY {
            self.accept_due = false;
            self.accept_skipped = 0;
            self.accept_all();
        } else {
            self.accept_skipped += 1;
        }
        let keys: Vec<u64> = self.conns.keys().copied().collect();
        for k in keys {
            self.pump_conn(k);
        }
        self.hello_sweep();
    }

    fn accept_all(&mut self) {
        loop {
            let (fd, cred) = match accept(self.listener.fd.as_raw_fd(), "caps_sys_service") {
                Ok(Some(conn)) => conn,
                Ok(None) => return,
                Err(e) => {
                    warn!(
                        "caps_sys_service",
                        "{}: accept: {}",
                        self.listener.path.display(),
                        e
                    );
                    return;
                }
            };
            if !self
                .gate
                .admit("caps_sys_service", &self.listener.path.display(), &cred)
            {
                continue;
            }
            crate::trace!(
                "caps_sys_service",
                "{}: accepted a connection from pid {} (uid {})",
                self.listener.path.display(),
                cred.pid,
                cred.uid
            );
            let k = self.next_conn;
            self.next_conn += 1;
            self.news = true;
            self.conns.insert(
                k,
                SConn {
                    conn: Conn::new(fd, MAX_MSG as u32),
                    cred,
                    hello_done: false,
                    replied: HashMap::new(),
                    inflight: 0,
                    queued_bytes: 0,
                    charged: 0,
                },
            );
        }
    }

    fn pump_conn(&mut self, k: u64) {
        let Some(c) = self.conns.get_mut(&k) else {
            return;
        };
        c.conn.drained = false;
        if !c.hello_done {
            match c.conn.take_hello() {
                Ok(None) => return,
                Ok(Some(bytes)) => {
                    let status = match Hello::decode(&bytes, HelloKind::Client, VERSION_SYS) {
                        Err(w) => {
                            warn!(
                                "caps_sys_service",
                                "{}: dropping client pid {}: bad hello: {w}",
                                self.listener.path.display(),
                                c.cred.pid
                            );
                            libc::EPROTO
                        }
                        Ok(h) if !self.access.admits(&c.cred, h.status as i32) => libc::EACCES,
                        Ok(_) => 0,
                    };
                    let hello = Hello {
                        version: VERSION_SYS,
                        kind: HelloKind::Server,
                        max_msgsize: MAX_MSG as u32,
                        status: status as u32,
                    };
                    c.conn.out.extend_from_slice(&hello.encode());
                    if status == 0 {
                        c.conn.push_frame(&gen_frame(self.generation), &[]);
                    }
                    let flushed = c.conn.flush();
                    if status != 0 || flushed.is_err() {
                        self.remove_conn(k);
                        return;
                    }
                    c.hello_done = true;
                }
                Err(_) => {
                    self.remove_conn(k);
                    return;
                }
            }
        }
        loop {
            let Some(c) = self.conns.get_mut(&k) else {
                return;
            };
            if !self.budget.allows(c.cred.uid) {
                // Over budget: its requests wait in the socket.
                break;
            }
            match c.conn.next_frame() {
                Ok(None) => break,
                Ok(Some((h, body))) => {
                    if let Err(why) = self.frame(k, &h, body) {
                        warn!(
                            "caps_sys_service",
                            "{}: dropping client pid {}: {why}",
                            self.listener.path.display(),
                            self.conns.get(&k).map_or(0, |c| c.cred.pid)
                        );
                        self.conn_gone(k);
                        return;
                    }
                }
                Err(end) => {
                    if let ReadEnd::Protocol(w) = &end {
                        warn!(
                            "caps_sys_service",
                            "{}: dropping client pid {}: {w}",
                            self.listener.path.display(),
                            c.cred.pid
                        );
                    }
                    self.conn_gone(k);
                    return;
                }
            }
        }
        if let Some(c) = self.conns.get_mut(&k)
            && c.conn.flush().is_err()
        {
            self.conn_gone(k);
        }
        self.account(k);
    }

    /// One frame from connection `k`.
    fn frame(&mut self, k: u64, h: &Header, body: Vec<u8>) -> Result<(), &'static str> {
        let c = self.conns.get_mut(&k).ok_or("gone")?;
        match h.kind {
            FrameKind::Request => {
                if c.inflight >= MAX_AT_SERVER {
                    return Err("too many requests in flight");
                }
                c.inflight += 1;
                c.queued_bytes += body.len();
                let sid = self.next_sid;
                self.next_sid += 1;
                self.news = true;
                self.queue.push_back(Queued::Request {
                    sid,
                    conn: k,
                    client_id: h.id,
                    data: body,
                });
                Ok(())
            }
            FrameKind::Dispose => {
                let sid = c.replied.remove(&h.id).ok_or("dispose of no reply")?;
                // The client no longer counts it either.
                c.inflight = c.inflight.saturating_sub(1);
                self.news = true;
                self.queue.push_back(Queued::Dispose { sid, conn: k });
                Ok(())
            }
            FrameKind::Reply | FrameKind::Gen => Err("a server's frame from a client"),
        }
    }

    /// Connection `k` ended: its unread requests are dropped; requests
    /// the server holds and replies the client never confirmed come back
    /// as dispose notices.
    fn conn_gone(&mut self, k: u64) {
        let Some(c) = self.remove_conn(k) else {
            return;
        };
        crate::trace!(
            "caps_sys_service",
            "{}: connection from pid {} (uid {}) dropped",
            self.listener.path.display(),
            c.cred.pid,
            c.cred.uid
        );
        self.queue
            .retain(|q| !matches!(q, Queued::Request { conn, .. } if *conn == k));
        let mut notices: Vec<i64> = c.replied.values().copied().collect();
        for (sid, h) in self.held.iter_mut() {
            if h.conn == Some(k) {
                h.conn = None;
                notices.push(*sid);
            }
        }
        notices.sort_unstable();
        let any = !notices.is_empty()
            || self
                .queue
                .iter()
                .any(|q| matches!(q, Queued::Dispose { conn, .. } if *conn == k));
        self.news = true;
        for sid in notices {
            self.queue.push_back(Queued::Dispose { sid, conn: k });
        }
        if any {
            self.gone.insert(k, c.cred);
        }
    }

    fn cred_of(&self, k: u64) -> Option<&Cred> {
        self.conns
            .get(&k)
            .map(|c| &c.cred)
            .or_else(|| self.gone.get(&k))
    }

    /// The next message, if any, into `buf`.
    fn take(&mut self, buf: &mut [u8], cred: Option<&mut caps_cred>) -> Option<Got> {
        let front = self.queue.front()?;
        match front {
            Queued::Request {
                sid,
                conn,
                client_id,
                data,
            } => {
                let (sid, conn, client_id, size) = (*sid, *conn, *client_id, data.len());
                if let (Some(out), Some(c)) = (cred, self.cred_of(conn)) {
                    c.to_c(out);
                }
                if size > buf.len() {
                    return Some(Got {
                        size,
                        id: sid,
                        state: CAPMS_REQUEST,
                    });
                }
                if let Some(Queued::Request { data, .. }) = self.queue.pop_front() {
                    buf[..size].copy_from_slice(&data);
                }
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.queued_bytes -= size;
                }
                self.account(conn);
                self.held.insert(
                    sid,
                    Held {
                        conn: Some(conn),
                        client_id,
                    },
                );
                Some(Got {
                    size,
                    id: sid,
                    state: CAPMS_REQUEST,
                })
            }
            Queued::Dispose { sid, conn } => {
                let (sid, conn) = (*sid, *conn);
                if let (Some(out), Some(c)) = (cred, self.cred_of(conn)) {
                    c.to_c(out);
                }
                self.queue.pop_front();
                if self.held.get(&sid).is_some_and(|h| h.conn.is_none()) {
                    self.held.remove(&sid);
                }
                if !self.conns.contains_key(&conn)
                    && !self
                        .queue
                        .iter()
                        .any(|q| matches!(q, Queued::Dispose { conn: c, .. } if *c == conn))
                {
                    self.gone.remove(&conn);
                }
                Some(Got {
                    size: 0,
                    id: sid,
                    state: CAPMS_DISPOSE,
                })
            }
        }
    }

    fn reply(&mut self, sid: i64, data: &[u8]) -> Result<(), Errno> {
        let (conn, client_id) = if let Some(h) = self.held.remove(&sid) {
            match h.conn {
                Some(c) => (c, h.client_id),
                // The client went away; its dispose notice is queued.
                None => return Ok(()),
            }
        } else {
            // A request left queued because it was too big may be
            // answered without being read.
            let pos = self
                .queue
                .iter()
                .position(|q| matches!(q, Queued::Request { sid: s, .. } if *s == sid))
                .ok_or(Errno::EINVAL)?;
            match self.queue.remove(pos) {
                Some(Queued::Request {
                    conn,
                    client_id,
                    data,
                    ..
                }) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.queued_bytes -= data.len();
                    }
                    (conn, client_id)
                }
                _ => return Err(Errno::EINVAL),
            }
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        let h = Header {
            kind: FrameKind::Reply,
            body_len: data.len() as u32,
            id: client_id,
            capacity: 0,
            cmd: 0,
            error: 0,
            result: 0,
            pad: [0, 0],
        };
        c.conn.push_frame(&h, data);
        c.replied.insert(client_id, sid);
        if c.conn.flush().is_err() {
            self.conn_gone(conn);
        }
        self.account(conn);
        Ok(())
    }

    fn setgen(&mut self, generation: i64) {
        self.generation = generation;
        let mut dead = Vec::new();
        for (k, c) in self.conns.iter_mut().filter(|(_, c)| c.hello_done) {
            c.conn.push_frame(&gen_frame(generation), &[]);
            if c.conn.flush().is_err() {
                dead.push(*k);
            }
        }
        for k in dead {
            self.conn_gone(k);
        }
    }

    fn poll_fds(&self, fds: &mut Vec<libc::pollfd>) {
        fds.push(pollfd(self.listener.fd.as_raw_fd(), libc::POLLIN));
        for c in self.conns.values() {
            let out = if c.conn.queued() > 0 {
                libc::POLLOUT
            } else {
                0
            };
            let inp = if self.budget.allows(c.cred.uid) {
                libc::POLLIN
            } else {
                0
            };
            fds.push(pollfd(c.conn.raw(), inp | out));
        }
    }

    fn close(&mut self) {
        self.listener.unlink();
    }
}

fn gen_frame(generation: i64) -> Header {
    Header {
        kind: FrameKind::Gen,
        body_len: 0,
        id: 0,
        capacity: 0,
        cmd: 0,
        error: 0,
        result: generation as u64,
        pad: [0, 0],
    }
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

// ---- client --------------------------------------------------------------

/// `caps_sys_client`: connect to the service matching `(name, uid, gid)`
/// (-1: any). With `CAPF_WAITSVC`, wait until one appears.
pub fn client(name: &[u8], uid: u32, gid: u32, flags: i32) -> Result<i32, Errno> {
    check_name(name)?;
    let flags = flags & CAPF_UFLAGS;
    let dir = rendezvous::sys_dir();
    let watch = if flags & CAPF_WAITSVC != 0 {
        rendezvous::open_sys_dir("caps_sys_client")?;
        Some(DirWatch::new(&dir)?)
    } else {
        None
    };
    let (fd, generation) = loop {
        match connect_any(&dir, name, uid, gid, flags) {
            Err(Errno::ENOENT) if watch.is_some() => {}
            other => break other?,
        }
        if let Some(w) = &watch {
            w.wait(WAITSVC_POLL_MS)?;
        }
    };
    let raw = fd.as_raw_fd();
    set_nonblocking(raw);
    let cli = Cli {
        peer: Cred::of_peer(raw).unwrap_or_default(),
        conn: Conn::new(fd, MAX_MSG as u32),
        next_id: 1,
        outstanding: HashMap::new(),
        replies: VecDeque::new(),
        generation,
        news: false,
    };
    lock().insert(flags, Kind::Client(Box::new(cli)))
}

/// Try the matching services, newest first: the first live one answers
/// (accepts, or refuses with `EACCES`). `ENOENT` if none is live.
fn connect_any(
    dir: &Path,
    name: &[u8],
    uid: u32,
    gid: u32,
    flags: i32,
) -> Result<(OwnedFd, i64), Errno> {
    let hello = Hello {
        version: VERSION_SYS,
        kind: HelloKind::Client,
        max_msgsize: MAX_MSG as u32,
        status: flags as u32,
    };
    let mut silent = None;
    let nodes = matching_nodes(dir, name, uid, gid);
    let last = nodes.len().saturating_sub(1);
    for (i, node) in nodes.into_iter().enumerate() {
        let owner = (node.uid, node.gid);
        // A short deadline while another candidate remains (a silent node
        // must not hide a live one); the last candidate gets the ordinary
        // one, so a busy but live service is not given up on after 1 s.
        let deadline = if i == last {
            HELLO_TIMEOUT_MS
        } else {
            CANDIDATE_HELLO_MS
        };
        match handshake(
            &node.path,
            &hello,
            owner,
            &pump_services,
            "caps_sys_client",
            name,
            deadline,
        ) {
            Ok(fd) => {
                // The server follows its hello with its generation.
                let mut b = [0u8; HEADER_LEN];
                match read_exact_timeout(fd.as_raw_fd(), &mut b, deadline) {
                    Err(Errno::ETIMEDOUT) => {
                        silent = Some(node.path);
                        continue;
                    }
                    r => r?,
                }
                let h = Header::decode(&b, 0).map_err(|_| Errno::EPROTO)?;
                if h.kind != FrameKind::Gen {
                    return Err(Errno::EPROTO);
                }
                return Ok((fd, h.result as i64));
            }
            // A dead service's node, or one removed meanwhile.
            Err(Errno::ECONNREFUSED | Errno::ENOENT | Errno::ECONNRESET) => continue,
            // Accepts but does not answer: try the next one.
            Err(Errno::ETIMEDOUT) => {
                silent = Some(node.path);
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(p) = silent {
        warn!(
            "caps_sys_client",
            "service {}: {} accepted but sent no hello in time, and no other candidate answered",
            String::from_utf8_lossy(name),
            p.display()
        );
        return Err(Errno::ETIMEDOUT);
    }
    Err(Errno::ENOENT)
}

/// Let this process's services accept and answer hellos (called by a
/// connecting client, whose service may be one of them).
fn pump_services() {
    let mut t = lock();
    for e in t.entries.values_mut() {
        if let Kind::Service(s) = &mut e.kind {
            s.accept_due = true;
            e.pump();
            e.settle();
        }
    }
}

/// An inotify watch on the services directory: wakes a client waiting
/// for a service when a node is created or renamed into it.
struct DirWatch(OwnedFd);

impl DirWatch {
    fn new(dir: &Path) -> Result<DirWatch, Errno> {
        // SAFETY: plain inotify_init1 call.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
        // SAFETY: valid descriptor and path.
        let w = unsafe {
            libc::inotify_add_watch(
                fd.as_raw_fd(),
                c.as_ptr(),
                libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_ATTRIB,
            )
        };
        if w < 0 {
            return Err(errno());
        }
        Ok(DirWatch(fd))
    }

    /// Sleep until the directory changes or `ms` pass; `EINTR` on a
    /// signal.
    fn wait(&self, ms: i32) -> Result<(), Errno> {
        let mut p = pollfd(self.0.as_raw_fd(), libc::POLLIN);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, ms) } < 0 {
            return Err(errno());
        }
        let mut buf = [0u8; 4096];
        // SAFETY: drain the events into a local buffer.
        while unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        Ok(())
    }
}

impl Cli {
    /// Read every frame available, write what is queued. Never blocks.
    fn pump(&mut self) {
        if self.conn.dead {
            return;
        }
        self.conn.drained = false;
        loop {
            match self.conn.next_frame() {
                Ok(None) => break,
                Ok(Some((h, body))) => match h.kind {
                    FrameKind::Gen => self.generation = h.result as i64,
                    FrameKind::Reply
                        if self.outstanding.contains_key(&h.id)
                            && !self.replies.iter().any(|r| r.0 == h.id) =>
                    {
                        self.news = true;
                        self.replies.push_back((h.id, body, false));
                    }
                    _ => {
                        warn!("caps_sys_client", "service sent an unexpected frame");
                        self.lost();
                        return;
                    }
                },
                Err(end) => {
                    if let ReadEnd::Protocol(w) = end {
                        warn!("caps_sys_client", "dropping the connection: {w}");
                    }
                    self.lost();
                    return;
                }
            }
        }
        if self.conn.flush().is_err() {
            self.lost();
        }
    }

    /// The service is gone: every outstanding request without a reply
    /// gets an empty one, as the kernel auto-replied them.
    fn lost(&mut self) {
        self.news = true;
        self.conn.close();
        let mut ids: Vec<u64> = self
            .outstanding
            .keys()
            .filter(|id| !self.replies.iter().any(|r| r.0 == **id))
            .copied()
            .collect();
        ids.sort_unstable();
        for id in ids {
            self.replies.push_back((id, Vec::new(), true));
        }
    }

    fn put(&mut self, data: &[u8]) -> Result<i64, Errno> {
        if self.conn.dead {
            return Err(Errno::ENOTCONN);
        }
        if self.outstanding.len() > MAX_INPROG {
            return Err(Errno::ENOBUFS);
        }
        let id = self.next_id;
        self.next_id += 1;
        let h = Header {
            kind: FrameKind::Request,
            body_len: data.len() as u32,
            id,
            capacity: data.len() as u32,
            cmd: 0,
            error: 0,
            result: 0,
            pad: [0, 0],
        };
        self.conn.push_frame(&h, data);
        if self.conn.flush().is_err() {
            // The service is gone (a put does not read first: the send
            // tells).
            self.lost();
            return Err(Errno::ENOTCONN);
        }
        self.outstanding.insert(id, ());
        Ok(id as i64)
    }

    fn take(&mut self, buf: &mut [u8], cred: Option<&mut caps_cred>) -> Option<Got> {
        let (id, data, synth) = self.replies.front()?;
        let (id, size, synth) = (*id, data.len(), *synth);
        if let Some(out) = cred {
            self.peer.to_c(out);
        }
        let got = Got {
            size,
            id: id as i64,
            state: CAPMS_REPLY,
        };
        if size > buf.len() {
            return Some(got);
        }
        if let Some((_, data, _)) = self.replies.pop_front() {
            buf[..size].copy_from_slice(&data);
        }
        self.outstanding.remove(&id);
        if !synth && !self.conn.dead {
            let h = Header {
                kind: FrameKind::Dispose,
                body_len: 0,
                id,
                capacity: 0,
                cmd: 0,
                error: 0,
                result: 0,
                pad: [0, 0],
            };
            self.conn.push_frame(&h, &[]);
            if self.conn.flush().is_err() {
                self.lost();
            }
        }
        Some(got)
    }
}

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
    if let Kind::Service(s) = &mut e.kind {
        s.close();
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
    e.pump();
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
    let mut fds = Vec::new();
    // The entry we sleep on, once we did.
    let mut slept_on: Option<u64> = None;
    let mut listener_ready = false;
    // A service sleeps at most until a connection's hello is due.
    let mut due: Option<Instant>;
    loop {
        fds.clear();
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
            if let Kind::Service(s) = &mut e.kind {
                s.accept_due |= std::mem::take(&mut listener_ready);
            }
            // What an earlier read queued comes first; the sockets are
            // read only when nothing is queued (a system call saved per
            // message that arrived with another).
            let mut got = e.take(buf, cred.as_deref_mut())?;
            if got.is_none() {
                e.pump();
                e.settle();
                got = e.take(buf, cred.as_deref_mut())?;
            }
            if let Some(g) = got {
                e.settle();
                return Ok(g);
            }
            due = None;
            match &e.kind {
                Kind::Service(s) => {
                    s.poll_fds(&mut fds);
                    due = s.hello_due();
                }
                Kind::Client(c) if c.conn.dead => return Err(Errno::ENOTCONN),
                Kind::Client(c) => {
                    let out = if c.conn.queued() > 0 {
                        libc::POLLOUT
                    } else {
                        0
                    };
                    fds.push(pollfd(c.conn.raw(), libc::POLLIN | out));
                }
                Kind::Forked => return Err(Errno::ENOTCONN),
            }
            if !block {
                return Err(Errno::EAGAIN);
            }
            // Nothing to take: no other waiter is owed a wakeup either.
            e.drain();
            e.waiters += 1;
            slept_on = Some(e.serial);
            e.wake.clone()
        };
        // Holding `wake` keeps the eventfd open while we sleep on it.
        let wake = wake.ok_or(Errno::ENOTCONN)?;
        fds.push(pollfd(wake.as_raw_fd(), libc::POLLIN));
        let r = poll_adaptive(&mut fds, due);
        // A service's listener comes first in its poll set.
        listener_ready = r > 0 && fds[0].revents != 0;
        if r < 0 {
            // A signal gives EINTR, as the kernel's interruptible sleep did.
            let e = errno();
            if let Ok(en) = lock().get(id)
                && Some(en.serial) == slept_on
            {
                en.waiters -= 1;
            }
            return Err(e);
        }
    }
}

/// How long a blocking `get` polls before it sleeps, in ns: adaptive as
/// the LWKT cpus' socket polling (`crate::cpu::SOCK_SPIN_MAX_NS`): a peer
/// on another core answers in microseconds, while a sleep and its wakeup
/// cost tens of microseconds on a virtual machine.
static SPIN_NS: AtomicU32 = AtomicU32::new(SOCK_SPIN_MIN_NS);

/// `poll(fds)` until something is ready or `until` passes, after polling them (with `sched_yield`, so a peer on
/// the same core runs first) for up to the adaptive budget. The budget
/// doubles after a poll that found something, halves after one that did
/// not, and grows back to twice any sleep shorter than the maximum.
fn poll_adaptive(fds: &mut [libc::pollfd], until: Option<Instant>) -> i32 {
    let n = fds.len() as libc::nfds_t;
    let mut budget = SPIN_NS.load(Ordering::Relaxed);
    // SAFETY: `fds` is a valid array of `n` pollfds.
    let r = sock_spin(&mut budget, || unsafe {
        libc::poll(fds.as_mut_ptr(), n, 0)
    });
    if r != 0 {
        SPIN_NS.store(budget, Ordering::Relaxed);
        return r;
    }
    let t0 = Instant::now();
    let timeout = until.map_or(-1, |t| {
        let ms = t.saturating_duration_since(t0).as_millis() + 1;
        ms.min(i32::MAX as u128) as i32
    });
    // SAFETY: as above.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout) };
    if r > 0 {
        sock_spin_slept(&mut budget, t0);
    }
    SPIN_NS.store(budget, Ordering::Relaxed);
    r
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

    #[test]
    fn names() {
        assert_eq!(check_name(b""), Err(Errno::EINVAL));
        assert_eq!(check_name(b"a/b"), Err(Errno::EINVAL));
        assert_eq!(check_name(b"a,b"), Err(Errno::EINVAL));
        assert_eq!(check_name(b"a b"), Err(Errno::EINVAL));
        assert!(check_name(b"Test_1.x").is_ok());
        assert!(check_name(b"..").is_ok());
        assert!(check_name(&[b'a'; 63]).is_ok());
        assert_eq!(check_name(&[b'a'; 64]), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn node_names_round_trip() {
        let n = node_name(b"test", Some(1000), None);
        assert_eq!(n, "test,1000,-");
        assert_eq!(
            parse_node(n.as_bytes()),
            Some((&b"test"[..], Some(1000), None))
        );
        assert_eq!(parse_node(b"a.b,-,0"), Some((&b"a.b"[..], None, Some(0))));
        assert_eq!(parse_node(b".caps.12.3"), None);
        assert_eq!(parse_node(b"x,1,y"), None);
    }
}
