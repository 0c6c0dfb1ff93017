//! One connected CAPS socket with buffered, non-blocking input and
//! output, shared by the v1 ports (`port.rs`, driven by the cpu's event
//! loop) and the v2 `caps_sys_*` entries (`sys.rs`, driven by `poll`).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::cred::Cred;
use super::rendezvous::{self, Errno};
use super::wire::{FrameReader, HELLO_LEN, Header, Hello, HelloKind, WireError};
use crate::cpu::evloop::{self, Token};
use crate::warn;

/// How long a v1 client waits for the server's hello.
pub(super) const HELLO_TIMEOUT_MS: i32 = 30_000;
/// How long a v2 lookup waits for each candidate's hello (and generation)
/// before it moves on to the next candidate.
pub(super) const CANDIDATE_HELLO_MS: i32 = 1_000;

/// How long a service (v1 or v2) gives a new connection to complete its
/// hello before it drops it.
pub(super) const HELLO_DEADLINE: Duration = Duration::from_secs(2);

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

pub(super) fn errno() -> Errno {
    Errno::last()
}

pub(super) const EV_IN: u32 = libc::EPOLLIN as u32;
pub(super) const EV_OUT: u32 = libc::EPOLLOUT as u32;

/// Admission of connections to one service (v1 and v2 alike): a peer uid
/// other than root's and the service owner's may hold at most `limit`
/// connections at once (a quarter of the descriptors the process may
/// open, at least 4), so one user cannot take every descriptor. A
/// connection over the limit is closed at once; one log line a second
/// at most says so.
pub(super) struct Gate {
    owner: u32,
    limit: usize,
    by_uid: HashMap<u32, usize>,
    /// Refusals not yet logged, and when the last line was written.
    refused: u64,
    logged: Option<Instant>,
}

impl Gate {
    pub(super) fn new(owner: u32) -> Gate {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `rl` is a writable rlimit.
        let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
            rl.rlim_cur.min(1 << 20) as usize
        } else {
            1024
        };
        Gate {
            owner,
            limit: (nofile / 4).max(4),
            by_uid: HashMap::new(),
            refused: 0,
            logged: None,
        }
    }

    /// Count a new connection of `peer`, or refuse it (false) when its
    /// uid holds `limit` already.
    pub(super) fn admit(
        &mut self,
        func: &str,
        service: &dyn std::fmt::Display,
        peer: &Cred,
    ) -> bool {
        let exempt = peer.uid == 0 || peer.uid == self.owner;
        let n = self.by_uid.entry(peer.uid).or_insert(0);
        if !exempt && *n >= self.limit {
            self.refused += 1;
            let now = Instant::now();
            if self
                .logged
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                warn!(
                    func,
                    "{service}: uid {} holds {} connections, its limit: {} refused (last: pid {})",
                    peer.uid,
                    self.limit,
                    self.refused,
                    peer.pid
                );
                self.refused = 0;
                self.logged = Some(now);
            }
            return false;
        }
        *n += 1;
        true
    }

    /// A connection of `uid` ended.
    pub(super) fn release(&mut self, uid: u32) {
        if let Some(n) = self.by_uid.get_mut(&uid) {
            *n -= 1;
            if *n == 0 {
                self.by_uid.remove(&uid);
            }
        }
    }
}

/// What a service (v1 or v2) may buffer for its connections, requests
/// received and not yet taken or replied plus replies not yet written:
/// this much in total...
pub(super) const BUDGET_TOTAL: usize = 32 << 20;
/// ...and this much for the connections of one peer uid (root's and the
/// owner's count only towards the total).
pub(super) const BUDGET_PER_UID: usize = 8 << 20;

/// The memory budget of one service (v1 and v2 alike): a connection is
/// read from only while its uid is within its share and the service
/// within its total; otherwise it waits (back-pressure: its requests stay
/// in the socket) until replies are written or requests taken.
pub(super) struct Budget {
    owner: u32,
    total: usize,
    by_uid: HashMap<u32, usize>,
}

impl Budget {
    pub(super) fn new(owner: u32) -> Budget {
        Budget {
            owner,
            total: 0,
            by_uid: HashMap::new(),
        }
    }

    /// A connection of `uid` buffered `was` bytes and now buffers `now`.
    pub(super) fn update(&mut self, uid: u32, was: usize, now: usize) {
        if was == now {
            return;
        }
        self.total = self.total + now - was;
        let n = self.by_uid.entry(uid).or_insert(0);
        *n = *n + now - was;
        if *n == 0 {
            self.by_uid.remove(&uid);
        }
    }

    /// May a connection of `uid` be read from now?
    pub(super) fn allows(&self, uid: u32) -> bool {
        self.total < BUDGET_TOTAL
            && (uid == 0
                || uid == self.owner
                || self.by_uid.get(&uid).copied().unwrap_or(0) < BUDGET_PER_UID)
    }
}

/// One log line for the connections a service dropped at the hello
/// deadline in one sweep.
pub(super) fn log_hello_drops(func: &str, service: &dyn std::fmt::Display, n: usize, last: &Cred) {
    if n > 0 {
        warn!(
            func,
            "{service}: dropped {n} connection(s) with no hello within {} s (last: pid {}, uid {})",
            HELLO_DEADLINE.as_secs(),
            last.pid,
            last.uid
        );
    }
}

/// A one-shot monotonic timer (`timerfd`), for the hello deadline of a
/// service driven by the cpu's event loop.
pub(super) struct Timer {
    pub(super) fd: OwnedFd,
    pub(super) token: Option<Token>,
    /// When it is armed to fire.
    pub(super) at: Option<Instant>,
}

impl Timer {
    pub(super) fn new() -> Result<Timer, Errno> {
        // SAFETY: plain timerfd_create call.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(errno());
        }
        Ok(Timer {
            // SAFETY: a new descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            token: None,
            at: None,
        })
    }

    /// Fire at `at` (`None`: disarm).
    pub(super) fn arm(&mut self, at: Option<Instant>) {
        self.at = at;
        let d = at.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: our timerfd and a valid itimerspec.
        unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    /// Consume the expiry (the descriptor is level-triggered).
    pub(super) fn clear(&self) {
        let mut v = 0u64;
        // SAFETY: an 8-byte read into a valid u64.
        unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut v).cast(), 8) };
    }
}

/// Counts the `fork()`s this process's line of ancestors made: a port
/// made under an older value was inherited across `fork()`.
static FORK_GEN: AtomicU32 = AtomicU32::new(0);

/// The current fork generation (see [`FORK_GEN`]).
pub(super) fn fork_generation() -> u32 {
    FORK_GEN.load(Ordering::Relaxed)
}

/// In the child after `fork()` (its only thread): every inherited port is
/// now dead here, and this cpu's event loop is the child's own.
pub(super) fn after_fork_child() {
    FORK_GEN.fetch_add(1, Ordering::Relaxed);
    evloop::after_fork_child();
}

/// One connected socket: buffered input and output, registration.
pub(super) struct Conn {
    pub(super) fd: Option<OwnedFd>,
    pub(super) token: Option<Token>,
    /// Bytes read but not yet consumed: `inbuf[in_pos..in_end]`.
    pub(super) inbuf: Box<[u8]>,
    pub(super) in_pos: usize,
    pub(super) in_end: usize,
    /// The last read emptied the socket; wait for the next event.
    pub(super) drained: bool,
    pub(super) reader: FrameReader,
    pub(super) out: Vec<u8>,
    pub(super) out_pos: usize,
    pub(super) events: u32,
    pub(super) dead: bool,
    /// Largest payload accepted from the peer.
    max_body: u32,
    /// The peer's hello as far as it came (read apart from `inbuf`, so a
    /// connection that never completes it costs no read buffer).
    hello: [u8; HELLO_LEN],
    hello_got: usize,
    /// When the connection was made (a service drops it if its hello
    /// is not complete by `HELLO_DEADLINE`).
    pub(super) since: Instant,
}

/// How reading a connection ended.
pub(super) enum ReadEnd {
    Eof,
    Errno(Errno),
    Protocol(WireError),
}

impl std::fmt::Display for ReadEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadEnd::Eof => write!(f, "connection closed"),
            ReadEnd::Errno(e) => write!(f, "{e}"),
            ReadEnd::Protocol(w) => write!(f, "protocol error: {w}"),
        }
    }
}

impl Conn {
    pub(super) fn new(fd: OwnedFd, max_body: u32) -> Conn {
        Conn {
            fd: Some(fd),
            token: None,
            inbuf: Box::default(),
            in_pos: 0,
            in_end: 0,
            drained: false,
            reader: FrameReader::default(),
            out: Vec::new(),
            out_pos: 0,
            events: EV_IN,
            dead: false,
            max_body,
            hello: [0; HELLO_LEN],
            hello_got: 0,
            since: Instant::now(),
        }
    }

    pub(super) fn raw(&self) -> i32 {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    pub(super) fn set_events(&mut self, events: u32) {
        if events != self.events {
            self.events = events;
            if let Some(t) = self.token {
                evloop::modify(t, events);
            }
        }
    }

    pub(super) fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Write as much queued output as the socket takes.
    pub(super) fn flush(&mut self) -> Result<(), Errno> {
        while self.out_pos < self.out.len() {
            // SAFETY: the slice is valid; MSG_NOSIGNAL keeps SIGPIPE away.
            let n = unsafe {
                libc::send(
                    self.raw(),
                    self.out[self.out_pos..].as_ptr().cast(),
                    self.out.len() - self.out_pos,
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                match errno() {
                    Errno::EINTR => continue,
                    Errno::EAGAIN => break,
                    e => return Err(e),
                }
            }
            self.out_pos += n as usize;
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        let want_out = self.queued() > 0;
        let events = (self.events & !EV_OUT) | if want_out { EV_OUT } else { 0 };
        self.set_events(events);
        Ok(())
    }

    /// Queue one frame.
    pub(super) fn push_frame(&mut self, h: &Header, body: &[u8]) {
        self.out.extend_from_slice(&h.encode());
        self.out.extend_from_slice(body);
    }

    /// Read more bytes behind the unconsumed input: Ok(true) if some
    /// arrived, Ok(false) if none are available now. A short read means
    /// the socket is empty for now; the next readiness event clears
    /// `drained` (level-triggered epoll), which saves a `recv` that would
    /// only say `EAGAIN`.
    pub(super) fn fill(&mut self) -> Result<bool, ReadEnd> {
        if self.drained {
            return Ok(false);
        }
        if self.inbuf.is_empty() {
            self.inbuf = vec![0u8; READ_CHUNK].into_boxed_slice();
        }
        if self.in_pos == self.in_end {
            self.in_pos = 0;
            self.in_end = 0;
        } else if self.in_end == READ_CHUNK {
            self.inbuf.copy_within(self.in_pos..self.in_end, 0);
            self.in_end -= self.in_pos;
            self.in_pos = 0;
        }
        let room = READ_CHUNK - self.in_end;
        loop {
            // SAFETY: `inbuf[in_end..]` is writable for `room` bytes.
            let n = unsafe {
                libc::recv(
                    self.raw(),
                    self.inbuf[self.in_end..].as_mut_ptr().cast(),
                    room,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                self.in_end += n as usize;
                self.drained = (n as usize) < room;
                return Ok(true);
            }
            if n == 0 {
                return Err(ReadEnd::Eof);
            }
            match errno() {
                Errno::EINTR => continue,
                Errno::EAGAIN => {
                    self.drained = true;
                    return Ok(false);
                }
                e => return Err(ReadEnd::Errno(e)),
            }
        }
    }

    /// The next whole frame from the input, reading the socket as needed.
    pub(super) fn next_frame(&mut self) -> Result<Option<(Header, Vec<u8>)>, ReadEnd> {
        loop {
            if self.in_pos == self.in_end && !self.fill()? {
                return Ok(None);
            }
            let (n, frame) = self
                .reader
                .feed(&self.inbuf[self.in_pos..self.in_end], self.max_body)
                .map_err(ReadEnd::Protocol)?;
            self.in_pos += n;
            if frame.is_some() {
                return Ok(frame);
            }
        }
    }

    /// Take exactly `HELLO_LEN` bytes of hello from the socket, once
    /// they all came (what follows stays in the socket).
    pub(super) fn take_hello(&mut self) -> Result<Option<[u8; HELLO_LEN]>, ReadEnd> {
        while self.hello_got < HELLO_LEN {
            let want = HELLO_LEN - self.hello_got;
            // SAFETY: `hello[hello_got..]` is writable for `want` bytes.
            let n = unsafe {
                libc::recv(
                    self.raw(),
                    self.hello[self.hello_got..].as_mut_ptr().cast(),
                    want,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                self.hello_got += n as usize;
                continue;
            }
            if n == 0 {
                return Err(ReadEnd::Eof);
            }
            match errno() {
                Errno::EINTR => continue,
                Errno::EAGAIN => return Ok(None),
                e => return Err(ReadEnd::Errno(e)),
            }
        }
        Ok(Some(self.hello))
    }

    /// Has the hello deadline passed without a complete hello?
    pub(super) fn hello_overdue(&self, now: Instant) -> bool {
        self.hello_got < HELLO_LEN && now.duration_since(self.since) >= HELLO_DEADLINE
    }

    /// An inherited connection in a `fork()` child: forget the event loop
    /// registration (it is the parent's), close the child's copy of the
    /// socket, drop what was queued. Later writes fail (`EBADF`), so the
    /// usual shutdown paths run without touching the parent's socket.
    pub(super) fn disown(&mut self) {
        self.token = None;
        self.fd = None;
        self.out.clear();
        self.out_pos = 0;
        self.in_pos = 0;
        self.in_end = 0;
    }

    /// Stop watching and close the socket. What the peer sent and we did
    /// not read (up to 64 KiB) is read and discarded first: a socket
    /// closed with unread input resets the connection, and the peer could
    /// lose what we wrote last (a refusing hello, say).
    pub(super) fn close(&mut self) {
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            // SAFETY: `sink` is writable for its length; a closed
            // descriptor (-1) just fails.
            let n = unsafe {
                libc::recv(
                    self.raw(),
                    sink.as_mut_ptr().cast(),
                    sink.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                break;
            }
        }
        self.dead = true;
        if let Some(t) = self.token.take() {
            evloop::unregister(t);
        }
        self.fd = None;
        self.out.clear();
        self.out_pos = 0;
    }
}

pub(super) fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: valid buffer; MSG_NOSIGNAL keeps SIGPIPE away.
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = errno();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

pub(super) fn read_exact_timeout(fd: i32, buf: &mut [u8], timeout_ms: i32) -> Result<(), Errno> {
    let mut got = 0;
    while got < buf.len() {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r == 0 {
            return Err(Errno::ETIMEDOUT);
        }
        if r < 0 {
            if errno() == Errno::EINTR {
                continue;
            }
            return Err(errno());
        }
        // SAFETY: the rest of `buf` is writable.
        let n = unsafe { libc::recv(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) };
        if n == 0 {
            return Err(Errno::ECONNRESET);
        }
        if n < 0 {
            if errno() == Errno::EINTR {
                continue;
            }
            return Err(errno());
        }
        got += n as usize;
    }
    Ok(())
}

/// Connect to the service socket at `path`, send `hello` and wait (at
/// most `wait_ms`) for the server's hello of the same version.
/// `owner`: the uid and gid the node claims its service runs as; a
/// listener whose credentials may not claim them is refused (`ENOENT`,
/// one log line) before anything is sent. `sent` runs between sending and waiting (v2: this process's own
/// services answer then, so a program can be a client of its own service).
/// Returns the connected socket, still blocking. A refusal is the errno
/// the server put in its status; a malformed answer is `EPROTO`, logged
/// under `func` with the service `name`.
pub(super) fn handshake(
    path: &Path,
    hello: &Hello,
    owner: (Option<u32>, Option<u32>),
    sent: &dyn Fn(),
    func: &str,
    name: &[u8],
    wait_ms: i32,
) -> Result<OwnedFd, Errno> {
    let r = (|| {
        let fd = rendezvous::connect(path)?;
        // Before a byte goes out: is the listener really run by the owner
        // the node claims (`Cred::may_serve`)? If not, it is not that
        // service.
        let peer = Cred::of_peer(fd.as_raw_fd())?;
        if !peer.may_serve(owner.0, owner.1) {
            warn!(
                func,
                "{} is served by pid {} (uid {}, gid {}), which may not publish it: ignored",
                path.display(),
                peer.pid,
                peer.uid,
                peer.gid
            );
            return Err(Errno::ENOENT);
        }
        write_all(fd.as_raw_fd(), &hello.encode())?;
        sent();
        let mut buf = [0u8; HELLO_LEN];
        read_exact_timeout(fd.as_raw_fd(), &mut buf, wait_ms)?;
        let reply = Hello::decode(&buf, HelloKind::Server, hello.version).map_err(|w| {
            warn!(func, "service {}: {w}", String::from_utf8_lossy(name));
            Errno::EPROTO
        })?;
        if reply.status != 0 {
            return Err(Errno(reply.status as i32));
        }
        Ok(fd)
    })();
    trace_connect(func, path, &r);
    r
}

/// `LIBCAPS_DEBUG`: the outcome of a connection to `path`.
fn trace_connect(func: &str, path: &Path, r: &Result<OwnedFd, Errno>) {
    if !crate::diag::debug_on() {
        return;
    }
    match r {
        Ok(fd) => {
            let peer = Cred::of_peer(fd.as_raw_fd()).unwrap_or_default();
            crate::trace!(
                func,
                "connected to {} (server pid {}, uid {})",
                path.display(),
                peer.pid,
                peer.uid
            );
        }
        Err(e) => crate::trace!(func, "cannot connect to {}: {}", path.display(), *e),
    }
}

/// Put a descriptor in non-blocking mode.
pub(super) fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Accept one pending connection on listening socket `lfd`, non-blocking
/// and close-on-exec, with its peer's credentials as the kernel gives
/// them: `Ok(None)` when none is pending. A connection whose credentials
/// cannot be read is closed with one log line (it is never taken for
/// anybody, least of all uid 0). Other errors (`EMFILE` and friends)
/// leave the connection pending for a later try. `func`: the service call
/// log lines are written under.
pub(super) fn accept(lfd: i32, func: &str) -> Result<Option<(OwnedFd, Cred)>, Errno> {
    keep_spare();
    loop {
        // SAFETY: accept4 on a listening socket the caller owns; no
        // address is asked for.
        let fd = unsafe {
            libc::accept4(
                lfd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: a new descriptor nobody else owns.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            match Cred::of_peer(fd.as_raw_fd()) {
                Ok(cred) => return Ok(Some((fd, cred))),
                Err(e) => {
                    warn!(
                        func,
                        "refusing a connection whose peer credentials cannot be read: {}", e
                    );
                    continue;
                }
            }
        }
        match errno() {
            Errno::EINTR | Errno::ECONNABORTED => continue,
            Errno::EAGAIN => return Ok(None),
            e @ (Errno::EMFILE | Errno::ENFILE) => {
                // Out of descriptors (accept4 says so whether or not a
                // connection is pending): a pending connection would stay
                // pending and the listener readable, so the service would
                // spin on it. Turn it away instead (its client sees the
                // end of the connection), and say so at most once a
                // second.
                match shed_one(lfd) {
                    Some(true) => warn_rarely(func, e, true),
                    Some(false) => return Ok(None),
                    None => {
                        warn_rarely(func, e, false);
                        return Err(e);
                    }
                }
            }
            e => return Err(e),
        }
    }
}

/// A descriptor kept open to be given up when the process runs out of
/// them (`-1`: none yet), so one pending connection can be accepted and
/// closed. Atomic rather than under a lock: a `fork()` by another thread
/// must not leave the child a lock it can never take.
static SPARE: AtomicI32 = AtomicI32::new(-1);

/// Open the spare descriptor if there is none (from the first accept on).
fn keep_spare() {
    if SPARE.load(Ordering::Relaxed) >= 0 {
        return;
    }
    // SAFETY: a constant NUL-terminated path.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd >= 0
        && SPARE
            .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        // SAFETY: our own descriptor; another thread's spare won.
        unsafe { libc::close(fd) };
    }
}

/// Accept and close one pending connection on `lfd` using the spare
/// descriptor: `Some(true)` if one was turned away, `Some(false)` if none
/// was pending, `None` if there was no spare to give up.
fn shed_one(lfd: i32) -> Option<bool> {
    let spare = SPARE.swap(-1, Ordering::AcqRel);
    if spare < 0 {
        return None;
    }
    // SAFETY: our own spare descriptor; accept4 on the caller's listener,
    // and the accepted descriptor closed at once.
    let shed = unsafe {
        libc::close(spare);
        let fd = libc::accept4(
            lfd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        );
        if fd >= 0 {
            libc::close(fd);
        }
        fd >= 0
    };
    keep_spare();
    Some(shed)
}

/// One log line for running out of descriptors, at most once a second.
fn warn_rarely(func: &str, e: Errno, shed: bool) {
    // Seconds on the monotonic clock of the last line (+1, 0: none yet).
    static LAST: AtomicU64 = AtomicU64::new(0);
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now = ts.tv_sec as u64 + 1;
    let last = LAST.load(Ordering::Relaxed);
    if last == now
        || LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    warn!(
        func,
        "accept: {}{}",
        e,
        if shed {
            ": turning new connections away"
        } else {
            ""
        }
    );
}
