//! CAPS over shared memory (issue 16, phase 1: the parts that do not
//! depend on the connection layer; not yet used by the faces).
//!
//! After the hello, one connection may carry its frames through a pair of
//! single-producer/single-consumer byte rings in a sealed `memfd` made for
//! it alone ([`region`]), passed over the connection's socket with
//! `SCM_RIGHTS` ([`fdpass`]). The rings ([`ring`]) carry the frames of
//! `docs/wire-protocol.md` byte for byte (48-byte header and payload,
//! padded to 8 bytes); a frame too big for a ring travels on the socket,
//! announced by a marker record in the ring so that order is kept
//! ([`Inbound`]). The socket stays open: it carries those big frames, the
//! doorbells (a 48-byte [`DOORBELL`] header, sent only to a side that said
//! it is asleep) and the peer's death (EOF).
//!
//! The peer can rewrite the shared memory at any moment: every index and
//! length is copied out once and validated before use, every access to the
//! shared bytes is an atomic load or store (no Rust reference to plain data
//! in the mapping is ever formed), and a violation is a [`ShmError`] after
//! which the connection layer drops the connection with one log line.
//! The format is in `docs/wire-protocol.md`, "Shared-memory transport".

use std::collections::VecDeque;

use super::wire::{Frame, HEADER_LEN, WireError};

pub mod fdpass;
pub mod region;
pub mod ring;

pub use region::{DEFAULT_RING, Region, Side};
pub use ring::{Consumer, Next, Probe, Producer, Push, Record};

/// Kind of the ring-only marker record: "the next frame of this direction
/// is on the socket". A 48-byte header whose other fields are all 0.
pub const MARKER: u16 = 0x8000;
/// Kind of the socket-only doorbell: "look at the rings". A 48-byte header
/// whose other fields are all 0; its receiver discards it.
pub const DOORBELL: u16 = 0x8001;

/// Kind of the socket-only attach record (client → service), sent with
/// the region's memfd attached (`SCM_RIGHTS`); its `result` field is the
/// ring size, every other byte 0.
pub const ATTACH: u16 = 0x8002;
/// Kind of the socket-only attach acknowledgement (service → client): the
/// service reads the rings and writes its replies to ring 1 from now on.
pub const ATTACHED: u16 = 0x8003;
/// Kind of the socket-only detach record (service → client, only to a
/// client that offered `wire::HELLO_DETACH`): the service wrote its last
/// record to ring 1, all of which the client has read; its frames come on
/// the socket from now on. The client answers [`DETACHED`] and unmaps the
/// region. Every other byte 0.
pub const DETACH: u16 = 0x8004;
/// Kind of the socket-only detached record (client → service, answering
/// [`DETACH`]): the client wrote its last record to ring 0 before it and
/// has unmapped the region; its next frame comes with a new region (a new
/// attach). Every other byte 0.
pub const DETACHED: u16 = 0x8005;

/// The doorbell as sent on the socket.
pub fn doorbell() -> [u8; HEADER_LEN] {
    transport_header(DOORBELL)
}

/// Is this frame header, read from the socket, a doorbell? (A header with
/// the doorbell kind and a non-zero field is a violation: see
/// [`check_transport_header`].)
pub fn is_doorbell(b: &[u8; HEADER_LEN]) -> bool {
    u16::from_le_bytes([b[0], b[1]]) == DOORBELL
}

/// A marker or doorbell header: `kind`, every other byte 0.
pub(crate) fn transport_header(kind: u16) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0..2].copy_from_slice(&kind.to_le_bytes());
    b
}

/// Check a marker or doorbell header: all bytes after the kind are 0.
pub fn check_transport_header(b: &[u8; HEADER_LEN]) -> Result<(), ShmError> {
    match b[2..].iter().position(|&x| x != 0) {
        None => Ok(()),
        Some(i) => Err(ShmError::BadRecord(WireError::BadField(
            "transport record field",
            (i + 2) as u64,
        ))),
    }
}

/// Why the shared-memory transport of a connection failed. Every variant
/// but [`ShmError::Os`] means the peer broke the protocol; the connection
/// layer drops that connection with one log line (`Display` is the line's
/// text) and completes its outstanding requests as for a dead peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmError {
    /// A system call failed (creating, sealing or mapping the region, or
    /// passing descriptors): its errno.
    Os(i32),
    /// The descriptor or region offered by the peer is not what the
    /// protocol requires (not a memfd, other seals, other size, bad region
    /// header): what was wrong and the value found.
    BadRegion(&'static str, u64),
    /// An index read from shared memory is impossible: which one, the
    /// value read, and our own index it was checked against.
    BadIndex(&'static str, u32, u32),
    /// A record header in a ring is not a valid frame or marker header.
    BadRecord(WireError),
    /// A record's length goes past what the producer published: record
    /// length, published bytes.
    Truncated(u32, u32),
    /// More frames arrived on the socket than markers can announce
    /// (a frame on the socket that no marker announces).
    Unannounced(usize),
    /// The peer left a record we wait to write in the ring for longer
    /// than the bound (seconds): it does not advance its index.
    Stalled(u64),
    /// The caller broke the API contract (a body slice of the wrong size,
    /// a body taken with no frame pending): a bug on our side, not the peer's.
    Misuse(&'static str),
}

impl ShmError {
    /// The errno the connection layer reports: the system call's for
    /// [`ShmError::Os`], `EPROTO` for a peer that broke the protocol,
    /// `EINVAL` for a misuse.
    pub fn errno(&self) -> crate::caps::errno::Errno {
        use crate::caps::errno::Errno;
        match self {
            ShmError::Os(e) => Errno(*e),
            ShmError::Misuse(_) => Errno::EINVAL,
            _ => Errno::EPROTO,
        }
    }
}

impl std::fmt::Display for ShmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShmError::Os(e) => write!(f, "{}", crate::caps::errno::Errno(*e)),
            ShmError::BadRegion(what, v) => write!(f, "shared memory refused: {what} ({v:#x})"),
            ShmError::BadIndex(what, got, ours) => {
                write!(f, "shared ring: impossible {what} {got} (ours {ours})")
            }
            ShmError::BadRecord(e) => write!(f, "shared ring: bad record: {e}"),
            ShmError::Truncated(len, avail) => write!(
                f,
                "shared ring: record of {len} bytes, only {avail} published"
            ),
            ShmError::Unannounced(n) => {
                write!(f, "{n} frames on the socket without a marker in the ring")
            }
            ShmError::Stalled(s) => write!(f, "shared ring: no room made for {s} s"),
            ShmError::Misuse(what) => write!(f, "shared ring misused: {what}"),
        }
    }
}

/// The receiving half of one direction of a connection in shared-memory
/// mode: the ring's frames and the big frames from the socket, merged back
/// into the order the peer sent them.
///
/// The rule (see `docs/wire-protocol.md`): a frame whose record does not
/// fit in the ring is sent on the socket, and before it the producer
/// publishes a [`MARKER`] record in the ring. So the marker of every
/// socket frame is visible in the ring before the frame can be read from
/// the socket (the producer publishes the tail, then calls `send`; the
/// consumer's `recv` returns, then it loads the tail), and at most as many
/// socket frames can wait for their marker as markers fit in the ring.
pub struct Inbound {
    ring: Consumer,
    /// Frames read from the socket whose marker has not been popped yet.
    early: VecDeque<Frame>,
    /// A marker was popped and its frame has not come from the socket yet:
    /// the ring is not read until it does.
    owed: bool,
}

impl Inbound {
    pub fn new(ring: Consumer) -> Inbound {
        Inbound {
            ring,
            early: VecDeque::new(),
            owed: false,
        }
    }

    /// The ring, for its sleep protocol ([`Consumer::prepare_sleep`], ...).
    pub fn ring(&mut self) -> &mut Consumer {
        &mut self.ring
    }

    /// A whole frame (not a doorbell) was read from the socket.
    pub fn socket_frame(&mut self, frame: Frame) -> Result<(), ShmError> {
        let limit = self.ring.capacity() / HEADER_LEN + usize::from(self.owed);
        if self.early.len() >= limit {
            return Err(ShmError::Unannounced(self.early.len() + 1));
        }
        self.early.push_back(frame);
        Ok(())
    }

    /// The next frame in the peer's order, if it has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ShmError> {
        self.next_frame_pooled(&mut Vec::new())
    }

    /// [`Inbound::next_frame`], a ring frame's payload copied into a
    /// buffer of `spares` if there is one ([`Consumer::pop_pooled`]).
    pub fn next_frame_pooled(
        &mut self,
        spares: &mut Vec<Vec<u8>>,
    ) -> Result<Option<Frame>, ShmError> {
        if self.owed {
            let f = self.early.pop_front();
            self.owed = f.is_none();
            return Ok(f);
        }
        match self.ring.pop_pooled(spares)? {
            None => Ok(None),
            Some(Record::Frame(h, body)) => Ok(Some((h, body))),
            Some(Record::Marker) => {
                let f = self.early.pop_front();
                self.owed = f.is_none();
                Ok(f)
            }
        }
    }

    /// Nothing half-received: no marker waits for its frame, no frame
    /// from the socket waits for its marker.
    pub fn settled(&self) -> bool {
        !self.owed && self.early.is_empty()
    }

    /// True when a marker waits for its frame from the socket.
    pub fn awaits_socket(&self) -> bool {
        self.owed
    }
}

#[cfg(test)]
mod tests;
