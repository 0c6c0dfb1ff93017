//! The client's side of the connection sequence: connect, check who
//! serves the socket, exchange hellos (blocking, with a deadline).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::caps::cred::Cred;
use crate::caps::errno::Errno;
use crate::caps::rendezvous;
use crate::caps::wire::{HELLO_DETACH, HELLO_LEN, HELLO_OPTIONS, HELLO_SHM, Hello, HelloKind};

use super::transport::{ReadEnd, Transport};
use super::{set_nonblocking, shm_enabled};
use crate::caps::shm::Side;
use crate::warn;

pub(in crate::caps) fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: valid buffer; MSG_NOSIGNAL keeps SIGPIPE away.
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

pub(in crate::caps) fn read_exact_timeout(
    fd: i32,
    buf: &mut [u8],
    timeout_ms: i32,
) -> Result<(), Errno> {
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
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return Err(Errno::last());
        }
        // SAFETY: the rest of `buf` is writable.
        let n = unsafe { libc::recv(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) };
        if n == 0 {
            return Err(Errno::ECONNRESET);
        }
        if n < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return Err(Errno::last());
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
/// Returns the connected socket, still blocking, whether both sides
/// agreed to shared memory (offered unless `LIBCAPS_SHM=0`), and the
/// other options of `hello`'s (bits of `HELLO_OPTIONS`) the server agreed
/// to. A refusal is the errno the server put in its status; a malformed
/// answer is `EPROTO`, logged under `func` with the service `name`.
pub(in crate::caps) fn handshake(
    path: &Path,
    hello: &Hello,
    owner: (Option<u32>, Option<u32>),
    sent: &dyn Fn(),
    func: &str,
    name: &[u8],
    wait_ms: i32,
) -> Result<(OwnedFd, bool, u32), Errno> {
    let offer = shm_enabled();
    // With shared memory, the client also takes detach records (it
    // handles them whether or not the server says it sends them).
    // An answer's bit that we offered is an agreement, not an errno.
    let options = hello.status & HELLO_OPTIONS & !HELLO_SHM;
    let hello = &Hello {
        status: hello.status | if offer { HELLO_SHM | HELLO_DETACH } else { 0 },
        ..*hello
    };
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
        let errno = reply.status & !(HELLO_SHM | HELLO_DETACH | options);
        if errno != 0 {
            return Err(Errno(errno as i32));
        }
        Ok((
            fd,
            offer && reply.status & HELLO_SHM != 0,
            reply.status & options,
        ))
    })();
    trace_connect(func, path, &r);
    r
}

/// `LIBCAPS_DEBUG`: the outcome of a connection to `path`.
fn trace_connect(func: &str, path: &Path, r: &Result<(OwnedFd, bool, u32), Errno>) {
    if !crate::diag::debug_on() {
        return;
    }
    match r {
        Ok((fd, shm, _)) => {
            let peer = Cred::of_peer(fd.as_raw_fd()).unwrap_or_default();
            crate::trace!(
                func,
                "connected to {} (server pid {}, uid {}): {}",
                path.display(),
                peer.pid,
                peer.uid,
                if *shm { "shared memory" } else { "socket" }
            );
        }
        Err(e) => crate::trace!(func, "cannot connect to {}: {}", path.display(), *e),
    }
}

/// How a client's log lines name the connection it lets go of.
const DROPPING: &str = "dropping connection";

/// The client's transport over `fd`, the socket [`handshake`] connected
/// (made non-blocking here), taking payloads of at most `max_body`
/// bytes; over shared memory when the hellos agreed (`shm`), its
/// failures logged under `func`.
pub(in crate::caps) fn client_transport(
    fd: OwnedFd,
    max_body: u32,
    shm: bool,
    func: &'static str,
) -> Transport {
    set_nonblocking(fd.as_raw_fd());
    let mut tx = Transport::new(fd, max_body);
    if shm {
        tx.agree_shm(Side::Client, func, DROPPING.into());
    }
    tx
}

/// A client's connection ended for `why`: a protocol violation of the
/// service's gets one log line under `func` (the end of the connection
/// or a failed call is told by the requests that fail).
pub(in crate::caps) fn client_dropped(func: &str, why: &ReadEnd) {
    if let ReadEnd::Protocol(_) = why {
        warn!(func, "{DROPPING}: {why}");
    }
}
