//! What a service's library counts of its connections (both faces), and
//! the frames it answers itself, before a face sees them: `Ping` (any
//! admitted peer) and `Stat` (the service's owner and root; anybody else
//! is answered `EACCES`). See "Ping and Stat" in `docs/wire-protocol.md`.
//!
//! The counters are plain fields of the service's [`Service`], updated
//! on the thread or cpu that serves it (v1: the service port's cpu; v2:
//! under the entry table's lock), so counting costs an add.

use std::time::Instant;

use super::service::{Connection, Service};
use super::transport::ReadEnd;
use crate::caps::errno::Errno;
use crate::caps::wire::{Counters, FrameKind, HEADER_LEN, Header, WireError};

/// While a connection's unwritten output is at least this many bytes
/// after an answer of the library's, the connection is not read (its
/// peer must read the answers first): pings and stats cannot make a
/// service buffer more than this for one connection.
pub(super) const INTERNAL_OUT_MAX: usize = 64 << 10;

/// The counters of one service (the names on the wire are
/// `wire::STAT_NAMES`).
#[derive(Debug)]
pub(super) struct Stats {
    since: Instant,
    pub(super) connections_now: u64,
    pub(super) connections_total: u64,
    pub(super) requests: u64,
    pub(super) replies: u64,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) protocol_errors: u64,
    pub(super) dropped_hello_deadline: u64,
    pub(super) dropped_uid_limit: u64,
    pub(super) held_memory_budget: u64,
    pub(super) dropped_bad_frame: u64,
    pub(super) deepest_queue_bytes: u64,
    pub(super) refused: u64,
    pub(super) pings: u64,
    pub(super) stats: u64,
}

impl Stats {
    pub(super) fn new() -> Stats {
        Stats {
            since: Instant::now(),
            connections_now: 0,
            connections_total: 0,
            requests: 0,
            replies: 0,
            bytes_in: 0,
            bytes_out: 0,
            protocol_errors: 0,
            dropped_hello_deadline: 0,
            dropped_uid_limit: 0,
            held_memory_budget: 0,
            dropped_bad_frame: 0,
            deepest_queue_bytes: 0,
            refused: 0,
            pings: 0,
            stats: 0,
        }
    }

    /// The counters now, in the order of `wire::STAT_NAMES`.
    pub(super) fn counters(&self) -> Counters {
        Counters {
            values: [
                self.since.elapsed().as_millis() as u64,
                self.connections_now,
                self.connections_total,
                self.requests,
                self.replies,
                self.bytes_in,
                self.bytes_out,
                self.protocol_errors,
                self.dropped_hello_deadline,
                self.dropped_uid_limit,
                self.held_memory_budget,
                self.dropped_bad_frame,
                self.deepest_queue_bytes,
                self.refused,
                self.pings,
                self.stats,
            ],
        }
    }

    /// The service buffers `total` bytes now.
    pub(super) fn buffered(&mut self, total: usize) {
        self.deepest_queue_bytes = self.deepest_queue_bytes.max(total as u64);
    }
}

impl Service {
    /// Answer frame `h` of the library's own kinds (`Ping`, `Stat`) from
    /// connection `c`: queue the answer, count it, charge it to the
    /// budget, and hold the connection back while such answers fill its
    /// output. A `Stat` with a payload is a protocol error.
    pub(super) fn answer(&mut self, c: &mut Connection, h: &Header) -> Result<(), ReadEnd> {
        let (error, body) = match h.kind {
            FrameKind::Ping => {
                self.stats.pings += 1;
                (0, Vec::new())
            }
            FrameKind::Stat if h.body_len != 0 => {
                return Err(ReadEnd::Protocol(WireError::BadField(
                    "stat body_len",
                    h.body_len.into(),
                )));
            }
            FrameKind::Stat if c.peer.uid == 0 || c.peer.uid == self.owner => {
                self.stats.stats += 1;
                (0, self.stats.counters().encode())
            }
            _ => {
                crate::trace!(
                    self.func,
                    "{}: stat refused to pid {} (uid {})",
                    self.label,
                    c.peer.pid,
                    c.peer.uid
                );
                (Errno::EACCES.0, Vec::new())
            }
        };
        let a = Header {
            error,
            ..Header::new(h.kind, h.id, body.len() as u32)
        };
        c.tx.push_frame(&a, &body);
        let n = HEADER_LEN + body.len();
        self.stats.bytes_out += n as u64;
        self.charge(c, n);
        if c.tx.queued() >= INTERNAL_OUT_MAX {
            c.held_back = true;
        }
        Ok(())
    }
}

impl Connection {
    /// Is this connection held back until its peer reads the library's
    /// answers ([`INTERNAL_OUT_MAX`])? The first call that finds the
    /// output short enough again releases it.
    pub(super) fn answers_pending(&self) -> bool {
        self.held_back && self.tx.queued() >= INTERNAL_OUT_MAX
    }
}
