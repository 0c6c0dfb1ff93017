//! The service side of every CAPS connection, v1 ports and v2
//! `caps_sys_*` alike: accepting with the peer's credentials, the
//! per-uid gate, the hello and admission, the memory budget, and the log
//! lines. A face keeps one [`Service`] per service and one
//! [`Connection`] per client connection and adds only its own state.

use std::os::fd::OwnedFd;
use std::time::Instant;

use super::accept::accept;
use super::limits::{Budget, Gate};
use super::stats::{INTERNAL_OUT_MAX, Stats};
use super::transport::{ReadEnd, Transport, drop_spare_buffers};
use super::{HELLO_DEADLINE, TURN, shm_enabled};
use crate::caps::cred::Cred;
use crate::caps::errno::Errno;
use crate::caps::shm::Side;
use crate::caps::wire::{
    Frame, FrameKind, HEADER_LEN, HELLO_DETACH, HELLO_LEN, HELLO_SHM, Header, Hello, HelloKind,
};
use crate::warn;

/// What a service shares with every face: who it is in log lines, the
/// protocol it speaks, and what it allows its connections.
pub(in crate::caps) struct Service {
    /// The call log lines are written under (`caps_service`,
    /// `caps_sys_service`).
    pub(super) func: &'static str,
    /// How log lines name the service (v1: its name; v2: its socket).
    pub(super) label: String,
    /// The uid the service runs as (its statistics are its own and
    /// root's to see).
    pub(super) owner: u32,
    /// Protocol version (`wire::VERSION`, `wire::VERSION_SYS`).
    version: u16,
    /// Largest message, as the server hello announces it.
    max_msgsize: u32,
    /// Largest payload a connection's peer may send.
    max_body: u32,
    /// Connections per peer uid.
    gate: Gate,
    /// Bytes buffered for the connections.
    budget: Budget,
    /// What `capsctl stat` is told (`conn::stats`); boxed, so that a v1
    /// port's state stays small.
    pub(super) stats: Box<Stats>,
    /// The most connections held since memory was last given back to
    /// the system (`Service::ended`).
    trim_peak: u64,
    /// Memory was given back since the service last held no connection.
    trimmed: bool,
    /// The options of a client hello (bits of `wire::HELLO_OPTIONS`
    /// other than shared memory) this service's face takes: an offered
    /// one is agreed in the answer (v2: `wire::HELLO_DISPOSES`).
    pub(in crate::caps) options: u32,
}

/// The service side of one client connection.
pub(in crate::caps) struct Connection {
    pub(in crate::caps) tx: Transport,
    /// The peer's credentials, from the kernel at accept time.
    pub(in crate::caps) peer: Cred,
    hello_done: bool,
    /// What the service's budget counts for this connection.
    charged: usize,
    /// Not read until the peer reads the library's answers
    /// (`Connection::answers_pending`).
    pub(super) held_back: bool,
    /// Over the memory budget when last accounted (counted once per
    /// crossing).
    over_budget: bool,
    /// The hello options both sides agreed to (`Service::options`).
    pub(in crate::caps) options: u32,
    /// The last [`Connection::next_frame`] stopped after answering
    /// [`TURN`] library frames: more may wait where no poll sees them.
    turn_cut: bool,
}

/// Where a connection's hello stands after [`Service::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::caps) enum Admission {
    /// Not all of it came yet.
    Waiting,
    /// Accepted (now or before): frames may be read.
    Admitted,
    /// Refused, malformed or the peer went away: shut the connection
    /// down (without a further log line).
    Closed,
}

impl Service {
    /// A service owned by uid `owner`.
    pub(in crate::caps) fn new(
        func: &'static str,
        label: String,
        owner: u32,
        version: u16,
        max_msgsize: u32,
        max_body: u32,
    ) -> Service {
        Service {
            func,
            label,
            owner,
            version,
            max_msgsize,
            max_body,
            gate: Gate::new(owner),
            budget: Budget::new(owner),
            stats: Box::new(Stats::new()),
            trim_peak: 0,
            trimmed: false,
            options: 0,
        }
    }

    /// The next connection pending on listening socket `lfd` that the
    /// gate admits (`None`: none is pending, or accepting failed, which is
    /// logged).
    pub(in crate::caps) fn accept(&mut self, lfd: i32) -> Option<Connection> {
        loop {
            let (fd, peer) = match accept(lfd, self.func) {
                Ok(Some(conn)) => conn,
                Ok(None) => return None,
                Err(e) => {
                    warn!(self.func, "{}: accept: {e}", self.label);
                    return None;
                }
            };
            if !self.gate.admit(self.func, &self.label, &peer) {
                self.stats.dropped_uid_limit += 1;
                continue;
            }
            crate::trace!(
                self.func,
                "{}: accepted a connection from pid {} (uid {})",
                self.label,
                peer.pid,
                peer.uid
            );
            return Some(self.open(fd, peer));
        }
    }

    /// The service side of connected socket `fd` (non-blocking), whose
    /// peer the kernel says is `peer`.
    pub(in crate::caps) fn open(&mut self, fd: OwnedFd, peer: Cred) -> Connection {
        self.stats.connections_now += 1;
        self.stats.connections_total += 1;
        self.trim_peak = self.trim_peak.max(self.stats.connections_now);
        Connection {
            tx: Transport::new(fd, self.max_body),
            peer,
            hello_done: false,
            charged: 0,
            held_back: false,
            over_budget: false,
            options: 0,
            turn_cut: false,
        }
    }

    /// Read the client's hello as far as it came and answer it once
    /// complete: admitted when it is well-formed and `rule` (given the
    /// hello and the kernel's credentials of the peer) allows it, then
    /// `greet` queues what the face sends right after the server hello.
    /// A malformed hello is answered `EPROTO` and logged; a refused one
    /// `EACCES`.
    pub(in crate::caps) fn admit(
        &mut self,
        c: &mut Connection,
        rule: impl FnOnce(&Hello, &Cred) -> bool,
        greet: impl FnOnce(&mut Transport),
    ) -> Admission {
        if c.hello_done {
            return Admission::Admitted;
        }
        let bytes = match c.tx.take_hello() {
            Ok(None) => return Admission::Waiting,
            Ok(Some(bytes)) => bytes,
            Err(_) => return Admission::Closed,
        };
        self.stats.bytes_in += HELLO_LEN as u64;
        let mut offered = false;
        let mut detach = false;
        let mut options = 0;
        let status = match Hello::decode(&bytes, HelloKind::Client, self.version) {
            Err(w) => {
                self.log_drop(c.peer.pid, &format_args!("bad hello: {w}"));
                self.stats.protocol_errors += 1;
                Errno::EPROTO.0
            }
            Ok(mut h) => {
                offered = h.status & HELLO_SHM != 0;
                detach = offered && h.status & HELLO_DETACH != 0;
                options = h.status & self.options & !(HELLO_SHM | HELLO_DETACH);
                h.status &= !(HELLO_SHM | HELLO_DETACH | self.options);
                if rule(&h, &c.peer) {
                    0
                } else {
                    self.stats.refused += 1;
                    Errno::EACCES.0
                }
            }
        };
        let shm = status == 0 && offered && shm_enabled();
        let reply = Hello {
            version: self.version,
            kind: HelloKind::Server,
            max_msgsize: self.max_msgsize,
            status: match status {
                0 => {
                    options
                        | if shm { HELLO_SHM } else { 0 }
                        | if shm && detach { HELLO_DETACH } else { 0 }
                }
                e => e as u32,
            },
        };
        if shm {
            let label = format!("{}: dropping client pid {}", self.label, c.peer.pid);
            c.tx.agree_shm(Side::Service, self.func, label);
            c.tx.agree_detach(detach);
        }
        crate::trace!(
            self.func,
            "{}: connection from pid {}: {}",
            self.label,
            c.peer.pid,
            if shm { "shared memory" } else { "socket" }
        );
        let before = c.tx.queued();
        c.tx.push_bytes(&reply.encode());
        if status == 0 {
            greet(&mut c.tx);
        }
        self.stats.bytes_out += c.tx.queued().saturating_sub(before) as u64;
        let flushed = c.tx.flush();
        if status != 0 || flushed.is_err() {
            return Admission::Closed;
        }
        c.hello_done = true;
        c.options = options;
        Admission::Admitted
    }

    /// May connection `c` be read from within the service's budget?
    pub(in crate::caps) fn may_read(&self, c: &Connection) -> bool {
        self.budget.allows(c.peer.uid) && !c.answers_pending()
    }

    /// Bring the budget up to date with what `c` buffers now: `held`
    /// bytes of the face's (requests received, not yet replied or taken)
    /// plus its unwritten output; nothing once it is dead. True when that
    /// shrank (paused connections may be read again).
    pub(in crate::caps) fn account(&mut self, c: &mut Connection, held: usize) -> bool {
        let now = if c.tx.dead { 0 } else { held + c.tx.queued() };
        let was = std::mem::replace(&mut c.charged, now);
        let over = self.budget.update(c.peer.uid, was, now);
        if now > was {
            self.stats.buffered(self.budget.total());
            if over && !c.over_budget {
                self.stats.held_memory_budget += 1;
            }
        }
        if now != was {
            c.over_budget = over;
        }
        now < was
    }

    /// Connection `c` buffers `n` more bytes (an answer of the library's).
    pub(super) fn charge(&mut self, c: &mut Connection, n: usize) {
        let was = c.charged;
        c.charged += n;
        if self.budget.update(c.peer.uid, was, c.charged) && !c.over_budget {
            c.over_budget = true;
            self.stats.held_memory_budget += 1;
        }
        self.stats.buffered(self.budget.total());
    }

    /// Connection `c` ends, for `why` when it is the peer's doing
    /// (`None`: the face or the service ends it): a protocol violation
    /// is counted and logged (one line), the connection closed and taken
    /// off its uid's count and the budget, and its end traced
    /// (`LIBCAPS_DEBUG`). Both faces end every connection here.
    pub(in crate::caps) fn ended(&mut self, c: &mut Connection, why: Option<&ReadEnd>) {
        if let Some(why @ ReadEnd::Protocol(_)) = why {
            self.stats.protocol_errors += 1;
            self.stats.dropped_bad_frame += 1;
            self.log_drop(c.peer.pid, why);
        }
        self.stats.connections_now -= 1;
        self.gate.release(c.peer.uid);
        self.budget
            .update(c.peer.uid, std::mem::take(&mut c.charged), 0);
        c.tx.close();
        crate::trace!(
            self.func,
            "{}: connection from pid {} (uid {}) dropped",
            self.label,
            c.peer.pid,
            c.peer.uid
        );
        self.give_back_memory();
    }

    /// Once the connections held fell to half of the most held since the
    /// last time (and that was at least `TRIM_AT`), and once more when
    /// the last of them closed, give the memory the allocator keeps free
    /// back to the system: a service that held many connections returns
    /// to its size before them once they close.
    fn give_back_memory(&mut self) {
        const TRIM_AT: u64 = 64;
        let now = self.stats.connections_now;
        let halved = self.trim_peak >= TRIM_AT && now * 2 <= self.trim_peak;
        let last = now == 0 && self.trimmed;
        if !(halved || last) {
            return;
        }
        self.trim_peak = now;
        self.trimmed = now != 0;
        drop_spare_buffers();
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases memory the allocator holds free.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    /// The log line for a connection dropped for `why`.
    fn log_drop(&self, pid: i32, why: &dyn std::fmt::Display) {
        warn!(
            self.func,
            "{}: dropping client pid {pid}: {why}", self.label
        );
    }
}

/// One sweep of the hello deadline over a service's connections, in
/// steps because a face may read a connection (which reaches the
/// service) in between: [`HelloSweep::select`] the overdue ones, drop
/// them ([`HelloSweep::dropped`] for each), then [`HelloSweep::finish`]
/// counts them and writes one log line for all.
pub(in crate::caps) struct HelloSweep<K> {
    overdue: Vec<K>,
    dropped: u64,
    last: Option<(i32, u32)>,
}

impl<K: Copy> HelloSweep<K> {
    /// The connections among `conns` (a face's key and connection)
    /// whose hello deadline is past without a complete hello.
    pub(in crate::caps) fn select<'a>(
        conns: impl IntoIterator<Item = (K, &'a Connection)>,
    ) -> HelloSweep<K> {
        let now = Instant::now();
        HelloSweep {
            overdue: conns
                .into_iter()
                .filter(|(_, c)| c.hello_overdue(now))
                .map(|(k, _)| k)
                .collect(),
            dropped: 0,
            last: None,
        }
    }

    /// The keys selected (taken: call once).
    pub(in crate::caps) fn take(&mut self) -> Vec<K> {
        std::mem::take(&mut self.overdue)
    }

    /// Connection `c` (selected) is being dropped.
    pub(in crate::caps) fn dropped(&mut self, c: &Connection) {
        self.dropped += 1;
        self.last = Some((c.peer.pid, c.peer.uid));
    }

    /// Count the drops in `svc`'s statistics; one log line for them all.
    pub(in crate::caps) fn finish(self, svc: &mut Service) {
        svc.stats.dropped_hello_deadline += self.dropped;
        if let Some((pid, uid)) = self.last {
            warn!(
                svc.func,
                "{}: dropped {} connection(s) with no hello within {} s (last: pid {pid}, uid {uid})",
                svc.label,
                self.dropped,
                HELLO_DEADLINE.as_secs(),
            );
        }
    }
}

impl Connection {
    /// The hello was answered and accepted.
    pub(in crate::caps) fn hello_done(&self) -> bool {
        self.hello_done
    }

    /// When the hello deadline drops this connection (`None`: its hello
    /// is done).
    pub(in crate::caps) fn hello_due(&self) -> Option<Instant> {
        (!self.hello_done).then(|| self.tx.since + HELLO_DEADLINE)
    }

    /// Is the hello deadline past without a complete hello?
    pub(in crate::caps) fn hello_overdue(&self, now: Instant) -> bool {
        !self.hello_done && self.tx.hello_overdue(now)
    }

    /// The next whole frame of the client's for the face of service
    /// `svc`. Frames of the library's own kinds (`Ping`, `Stat`) are
    /// answered here (`conn::stats`) and never returned; while their
    /// answers fill the output, nothing more is read (`Ok(None)`, and
    /// [`Service::may_read`] says no until the peer reads them). At most
    /// [`TURN`] of them are answered per call: then `Ok(None)` and
    /// [`Connection::turn_cut`] says so (a peer that sends them as fast
    /// as it reads the answers kept the service on its connection).
    pub(in crate::caps) fn next_frame(
        &mut self,
        svc: &mut Service,
    ) -> Result<Option<Frame>, ReadEnd> {
        let mut answered = 0;
        self.turn_cut = false;
        let next = loop {
            if self.held_back {
                if self.tx.queued() >= INTERNAL_OUT_MAX {
                    self.tx.flush().map_err(ReadEnd::Errno)?;
                    if self.tx.queued() >= INTERNAL_OUT_MAX {
                        break None;
                    }
                }
                self.held_back = false;
            }
            if answered == TURN {
                self.turn_cut = true;
                break None;
            }
            let Some((h, body)) = self.tx.next_frame()? else {
                break None;
            };
            svc.stats.bytes_in += (HEADER_LEN + body.len()) as u64;
            match h.kind {
                FrameKind::Ping | FrameKind::Stat => {
                    svc.answer(self, &h)?;
                    answered += 1;
                }
                FrameKind::Request => {
                    svc.stats.requests += 1;
                    break Some((h, body));
                }
                _ => break Some((h, body)),
            }
        };
        if answered > 0 {
            self.tx.flush().map_err(ReadEnd::Errno)?;
        }
        Ok(next)
    }

    /// Did the last [`Connection::next_frame`] stop at its bound of
    /// library frames (rather than for want of input)? The face reads the
    /// connection again at its next turn.
    pub(in crate::caps) fn turn_cut(&self) -> bool {
        self.turn_cut
    }

    /// Queue frame `h` with payload `body` for the peer, counted in the
    /// statistics of `svc` (a reply as a reply).
    pub(in crate::caps) fn send(&mut self, svc: Option<&mut Service>, h: &Header, body: &[u8]) {
        if let Some(s) = svc {
            s.stats.bytes_out += (HEADER_LEN + body.len()) as u64;
            if h.kind == FrameKind::Reply {
                s.stats.replies += 1;
            }
        }
        self.tx.push_frame(h, body);
    }
}
