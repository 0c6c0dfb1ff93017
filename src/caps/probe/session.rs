//! A connection to one service for `capsctl ping` and `capsctl stat`:
//! the client hello of the node's face, then the frames the service's
//! library answers itself (`Ping`, `Stat`; see `docs/wire-protocol.md`),
//! never a request, so the application sees nothing of it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use super::{Face, Node, connect_nb, drain_close, errno};
use crate::abi::{CAPF_GROUP, CAPF_USER, CAPF_WORLD};
use crate::caps::cred::Cred;
use crate::caps::wire::{
    Counters, FrameKind, HEADER_LEN, HELLO_LEN, Header, Hello, HelloKind, MAX_MSGSIZE, VERSION,
    VERSION_SYS,
};

/// Largest answer payload taken from a service (a `Stat` answer of a
/// much later version still fits).
const MAX_ANSWER: u32 = 64 << 10;

/// Why a session could not be opened or an answer did not come.
#[derive(Debug)]
pub enum AskError {
    /// Nobody listens at the node (`ECONNREFUSED`): a dead service.
    Dead,
    /// The listener may not publish the node (another user's socket
    /// under the service's name); nothing was sent to it.
    Impostor(Cred),
    /// The service refused us: at the hello (its status, e.g. `EACCES`),
    /// or a `Stat` answered with an error.
    Refused(i32),
    /// No answer within the time given.
    TimedOut,
    /// The service closed the connection.
    Closed,
    /// It sent something that is not the protocol.
    Protocol(String),
    Os(io::Error),
}

impl std::fmt::Display for AskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AskError::Dead => write!(f, "nobody serves it (the node of a dead service)"),
            AskError::Impostor(c) => write!(
                f,
                "served by pid {} (uid {}), which may not publish it: not asked",
                c.pid, c.uid
            ),
            AskError::Refused(e) => write!(f, "refused: {}", strerror(*e)),
            AskError::TimedOut => write!(f, "no answer in time"),
            AskError::Closed => write!(f, "the service closed the connection"),
            AskError::Protocol(w) => write!(f, "protocol error: {w}"),
            AskError::Os(e) => write!(f, "{e}"),
        }
    }
}

/// strerror's text of `e`, without std's " (os error N)".
pub fn strerror(e: i32) -> String {
    let t = io::Error::from_raw_os_error(e).to_string();
    t.split(" (os error").next().unwrap_or(&t).to_string()
}

/// An admitted connection to a service.
pub struct Session {
    fd: Option<OwnedFd>,
    /// The listener's credentials, from the kernel.
    pub server: Cred,
    next_id: u64,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            drain_close(fd);
        }
    }
}

fn os(e: i32) -> AskError {
    match e {
        libc::ECONNREFUSED => AskError::Dead,
        libc::EACCES | libc::EPERM => AskError::Refused(e),
        libc::ECONNRESET | libc::EPIPE => AskError::Closed,
        e => AskError::Os(io::Error::from_raw_os_error(e)),
    }
}

impl Session {
    /// Connect to `node` and complete the hello of its face within
    /// `wait`.
    pub fn open(node: &Node, wait: Duration) -> Result<Session, AskError> {
        let until = Instant::now() + wait;
        let (version, status) = match node.face {
            Face::V1 => (VERSION, 0),
            Face::V2 => (VERSION_SYS, (CAPF_USER | CAPF_GROUP | CAPF_WORLD) as u32),
        };
        let fd = connect_nb(node.path().as_os_str().as_bytes()).map_err(os)?;
        let server = Cred::of_peer(fd.as_raw_fd()).map_err(|e| os(e.0))?;
        if !node.may_be_served_by(&server) {
            return Err(AskError::Impostor(server));
        }
        let s = Session {
            fd: Some(fd),
            server,
            next_id: 1,
        };
        let hello = Hello {
            version,
            kind: HelloKind::Client,
            max_msgsize: MAX_MSGSIZE as u32,
            status,
        };
        s.send(&hello.encode(), until)?;
        let mut b = [0u8; HELLO_LEN];
        s.read_full(&mut b, until)?;
        let h = Hello::decode(&b, HelloKind::Server, version)
            .map_err(|w| AskError::Protocol(w.to_string()))?;
        if h.status != 0 {
            return Err(AskError::Refused(h.status as i32));
        }
        Ok(s)
    }

    fn raw(&self) -> i32 {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Wait until the socket is ready for `events` or `until` passes.
    fn wait(&self, events: libc::c_short, until: Instant) -> Result<(), AskError> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AskError::TimedOut);
            }
            let mut pfd = libc::pollfd {
                fd: self.raw(),
                events,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            match unsafe { libc::poll(&mut pfd, 1, ms) } {
                r if r > 0 => return Ok(()),
                r if r < 0 && errno() != libc::EINTR => return Err(os(errno())),
                _ => {}
            }
        }
    }

    fn send(&self, mut b: &[u8], until: Instant) -> Result<(), AskError> {
        while !b.is_empty() {
            // SAFETY: a valid buffer; MSG_NOSIGNAL keeps SIGPIPE away.
            let n = unsafe {
                libc::send(
                    self.raw(),
                    b.as_ptr().cast(),
                    b.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                b = &b[n as usize..];
                continue;
            }
            match errno() {
                libc::EINTR => {}
                libc::EAGAIN => self.wait(libc::POLLOUT, until)?,
                e => return Err(os(e)),
            }
        }
        Ok(())
    }

    fn read_full(&self, buf: &mut [u8], until: Instant) -> Result<(), AskError> {
        let mut got = 0;
        while got < buf.len() {
            // SAFETY: the rest of `buf` is writable.
            let n = unsafe {
                libc::recv(
                    self.raw(),
                    buf[got..].as_mut_ptr().cast(),
                    buf.len() - got,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                got += n as usize;
                continue;
            }
            if n == 0 {
                return Err(AskError::Closed);
            }
            match errno() {
                libc::EINTR => {}
                libc::EAGAIN => self.wait(libc::POLLIN, until)?,
                e => return Err(os(e)),
            }
        }
        Ok(())
    }

    /// Send a frame of `kind` and wait until `until` for its answer
    /// (older answers that came late and generation frames are passed
    /// over). An answer with an error is `Refused`.
    fn ask(&mut self, kind: FrameKind, until: Instant) -> Result<Vec<u8>, AskError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&Header::new(kind, id, 0).encode(), until)?;
        loop {
            let mut b = [0u8; HEADER_LEN];
            self.read_full(&mut b, until)?;
            let h =
                Header::decode(&b, MAX_ANSWER).map_err(|w| AskError::Protocol(w.to_string()))?;
            let mut body = vec![0u8; h.body_len as usize];
            self.read_full(&mut body, until)?;
            match h.kind {
                FrameKind::Gen => continue,
                k if k == kind && h.id < id => continue,
                k if k == kind && h.id == id => {
                    if h.error != 0 {
                        return Err(AskError::Refused(h.error));
                    }
                    return Ok(body);
                }
                k => {
                    return Err(AskError::Protocol(format!(
                        "unexpected frame kind {} (id {})",
                        k as u16, h.id
                    )));
                }
            }
        }
    }

    /// One no-op round trip: how long it took.
    pub fn ping(&mut self, wait: Duration) -> Result<Duration, AskError> {
        let t = Instant::now();
        self.ask(FrameKind::Ping, t + wait)?;
        Ok(t.elapsed())
    }

    /// The service's counters.
    pub fn stat(&mut self, wait: Duration) -> Result<Counters, AskError> {
        let body = self.ask(FrameKind::Stat, Instant::now() + wait)?;
        Counters::decode(&body).map_err(|w| AskError::Protocol(w.to_string()))
    }
}
