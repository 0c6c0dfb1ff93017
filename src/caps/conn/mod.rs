//! The connection layer of CAPS, below both faces: the v1 ports
//! (`caps::port`, driven by the cpu's event loop) and the v2
//! `caps_sys_*` calls (`caps::sys`, driven by `poll`) call it for
//! everything the wire protocol (`docs/wire-protocol.md`) asks of either.
//!
//! | file | what |
//! |---|---|
//! | `transport.rs` | [`Transport`]: framing and buffered non-blocking I/O of one connection |
//! | `service.rs` | [`Service`], [`Connection`]: accept, hello and admission, budget, peer death, log lines |
//! | `limits.rs` | the per-uid gate, the memory budget, the hello deadline timer |
//! | `accept.rs` | accepting with kernel credentials; shedding when out of descriptors |
//! | `client.rs` | the client's connect and hello exchange |
//! | `stats.rs` | the service's counters; the `Ping` and `Stat` frames the library answers itself |
//!
//! A face keeps only what is its own (v1: LWKT ports and message images;
//! v2: message ids, dispose notices, generations).
//!
//! Where later work goes in: a transport over shared memory replaces the
//! inside of [`Transport`] (frames in, frames out) and is negotiated in
//! [`Service::admit`] (the hello both faces go through); buffers taken
//! only while there is traffic are [`Transport`]'s own business (its read
//! buffer already waits for the first frame); frames the library answers
//! itself (capsctl's ping and statistics, `stats.rs`) are answered in
//! [`Connection::next_frame`], before a face sees them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::cpu::evloop;

mod accept;
mod client;
mod limits;
mod service;
#[cfg(test)]
mod shm_tests;
mod shmlink;
mod stats;
#[cfg(test)]
mod tests;
mod transport;
pub(in crate::caps) mod uring;

pub(super) use client::{client_dropped, client_transport, handshake, read_exact_timeout};
#[cfg(test)]
pub(in crate::caps) use limits::BUDGET_TOTAL;
pub(super) use limits::Timer;
pub(super) use service::{Admission, Connection, HelloSweep, Service};
pub(super) use shmlink::{QUIET, shm_enabled};
pub(super) use transport::{ReadEnd, Transport};

/// How long a v1 client waits for the server's hello.
pub(super) const HELLO_TIMEOUT_MS: i32 = 30_000;
/// How long a v2 lookup waits for each candidate's hello (and generation)
/// before it moves on to the next candidate.
pub(super) const CANDIDATE_HELLO_MS: i32 = 1_000;

/// How long a service (v1 or v2) gives a new connection to complete its
/// hello before it drops it.
pub(super) const HELLO_DEADLINE: Duration = Duration::from_secs(2);

/// Requests (v1) or frames (v2) a service reads from one connection at
/// a time: a connection with more is read on after every other
/// connection with input had its turn, so a client's burst delays
/// another client's request by at most this many of its own (issue 17;
/// `c-tests/caps_fair.c`). v1 ends a turn only when another connection
/// has input or the cpu is wanted (`evloop::others_waiting`): a
/// connection alone is read on.
pub(super) const TURN: usize = 32;
pub(super) const EV_IN: u32 = libc::EPOLLIN as u32;
pub(super) const EV_OUT: u32 = libc::EPOLLOUT as u32;

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
    uring::after_fork_child();
    evloop::after_fork_child();
}

/// Put a descriptor in non-blocking mode.
pub(super) fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}
