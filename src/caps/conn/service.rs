//! The service side of every CAPS connection, v1 ports and v2
//! `caps_sys_*` alike: accepting with the peer's credentials, the
//! per-uid gate, the hello and admission, the memory budget, and the log
//! lines. A face keeps one [`Service`] per service and one
//! [`Connection`] per client connection and adds only its own state.

use std::os::fd::OwnedFd;
use std::time::Instant;

use super::accept::accept;
use super::limits::{Budget, Gate};
use super::transport::{ReadEnd, Transport};
use super::{HELLO_DEADLINE, shm_enabled};
use crate::caps::cred::Cred;
use crate::caps::errno::Errno;
use crate::caps::shm::Side;
use crate::caps::wire::{Frame, HELLO_SHM, Hello, HelloKind};
use crate::warn;

/// What a service shares with every face: who it is in log lines, the
/// protocol it speaks, and what it allows its connections.
pub(in crate::caps) struct Service {
    /// The call log lines are written under (`caps_service`,
    /// `caps_sys_service`).
    func: &'static str,
    /// How log lines name the service (v1: its name; v2: its socket).
    label: String,
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
}

/// The service side of one client connection.
pub(in crate::caps) struct Connection {
    pub(in crate::caps) tx: Transport,
    /// The peer's credentials, from the kernel at accept time.
    pub(in crate::caps) peer: Cred,
    hello_done: bool,
    /// What the service's budget counts for this connection.
    charged: usize,
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
            version,
            max_msgsize,
            max_body,
            gate: Gate::new(owner),
            budget: Budget::new(owner),
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
    pub(in crate::caps) fn open(&self, fd: OwnedFd, peer: Cred) -> Connection {
        Connection {
            tx: Transport::new(fd, self.max_body),
            peer,
            hello_done: false,
            charged: 0,
        }
    }

    /// Read the client's hello as far as it came and answer it once
    /// complete: admitted when it is well-formed and `rule` (given the
    /// hello and the kernel's credentials of the peer) allows it, then
    /// `greet` queues what the face sends right after the server hello.
    /// A malformed hello is answered `EPROTO` and logged; a refused one
    /// `EACCES`.
    pub(in crate::caps) fn admit(
        &self,
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
        let mut offered = false;
        let status = match Hello::decode(&bytes, HelloKind::Client, self.version) {
            Err(w) => {
                self.dropping(c.peer.pid, &format_args!("bad hello: {w}"));
                Errno::EPROTO.0
            }
            Ok(mut h) => {
                offered = h.status & HELLO_SHM != 0;
                h.status &= !HELLO_SHM;
                if rule(&h, &c.peer) {
                    0
                } else {
                    Errno::EACCES.0
                }
            }
        };
        let shm = status == 0 && offered && shm_enabled();
        let reply = Hello {
            version: self.version,
            kind: HelloKind::Server,
            max_msgsize: self.max_msgsize,
            status: status as u32 | if shm { HELLO_SHM } else { 0 },
        };
        if shm {
            let label = format!("{}: dropping client pid {}", self.label, c.peer.pid);
            c.tx.agree_shm(Side::Service, self.func, label);
        }
        crate::trace!(
            self.func,
            "{}: connection from pid {}: {}",
            self.label,
            c.peer.pid,
            if shm { "shared memory" } else { "socket" }
        );
        c.tx.push_bytes(&reply.encode());
        if status == 0 {
            greet(&mut c.tx);
        }
        let flushed = c.tx.flush();
        if status != 0 || flushed.is_err() {
            return Admission::Closed;
        }
        c.hello_done = true;
        Admission::Admitted
    }

    /// May connection `c` be read from within the service's budget?
    pub(in crate::caps) fn may_read(&self, c: &Connection) -> bool {
        self.budget.allows(c.peer.uid)
    }

    /// Bring the budget up to date with what `c` buffers now: `held`
    /// bytes of the face's (requests received, not yet replied or taken)
    /// plus its unwritten output; nothing once it is dead. True when that
    /// shrank (paused connections may be read again).
    pub(in crate::caps) fn account(&mut self, c: &mut Connection, held: usize) -> bool {
        let now = if c.tx.dead { 0 } else { held + c.tx.queued() };
        let was = std::mem::replace(&mut c.charged, now);
        self.budget.update(c.peer.uid, was, now);
        now < was
    }

    /// Connection `c` ends: close it, take it off its uid's count and
    /// the budget.
    pub(in crate::caps) fn remove(&mut self, c: &mut Connection) {
        self.gate.release(c.peer.uid);
        self.budget
            .update(c.peer.uid, std::mem::take(&mut c.charged), 0);
        c.tx.close();
    }

    /// The log line for a connection dropped for `why` (a protocol
    /// violation).
    pub(in crate::caps) fn dropping(&self, pid: i32, why: &dyn std::fmt::Display) {
        warn!(
            self.func,
            "{}: dropping client pid {pid}: {why}", self.label
        );
    }

    /// `LIBCAPS_DEBUG`: connection `c` ended.
    pub(in crate::caps) fn trace_dropped(&self, c: &Connection) {
        crate::trace!(
            self.func,
            "{}: connection from pid {} (uid {}) dropped",
            self.label,
            c.peer.pid,
            c.peer.uid
        );
    }

    /// One log line for the `n` connections dropped at the hello
    /// deadline in one sweep (`last`: the last one's peer).
    pub(in crate::caps) fn log_hello_drops(&self, n: usize, last: &Cred) {
        if n > 0 {
            warn!(
                self.func,
                "{}: dropped {n} connection(s) with no hello within {} s (last: pid {}, uid {})",
                self.label,
                HELLO_DEADLINE.as_secs(),
                last.pid,
                last.uid
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

    /// The next whole frame of the client's. Frames of library-internal
    /// kinds (none yet; capsctl's ping and stat) are to be answered here,
    /// inside the connection layer, before a face sees them.
    pub(in crate::caps) fn next_frame(&mut self) -> Result<Option<Frame>, ReadEnd> {
        self.tx.next_frame()
    }
}
