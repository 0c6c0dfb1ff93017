//! Accepting connections on a service's listening socket, with the
//! peer's credentials as the kernel gives them, and turning connections
//! away when the process runs out of descriptors.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use crate::caps::cred::Cred;
use crate::caps::errno::Errno;
use crate::warn;

/// Accept one pending connection on listening socket `lfd`, non-blocking
/// and close-on-exec, with its peer's credentials as the kernel gives
/// them: `Ok(None)` when none is pending. A connection whose credentials
/// cannot be read is closed with one log line (it is never taken for
/// anybody, least of all uid 0). Other errors (`EMFILE` and friends)
/// leave the connection pending for a later try. `func`: the service call
/// log lines are written under.
pub(in crate::caps) fn accept(lfd: i32, func: &str) -> Result<Option<(OwnedFd, Cred)>, Errno> {
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
        match Errno::last() {
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
