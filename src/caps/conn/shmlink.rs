//! The shared-memory side of a [`Transport`](super::Transport)
//! (`docs/wire-protocol.md`, "Shared-memory transport"): whether the
//! hello agreed to it, the rings once the region is attached, the frames
//! waiting for room in the peer's ring, and the switch `LIBCAPS_SHM`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::caps::shm::{Consumer, Inbound, Probe, Producer, Push, ShmError};
use crate::caps::wire::HEADER_LEN;
use crate::cpu::evloop;

/// How long a service's record may wait for room in a client's ring: a
/// client that frees none for that long (while the connection has
/// traffic) is dropped. A client waits for its service as long as it
/// takes (as it waits for a service that does not read its socket).
pub(super) const STALL_LIMIT: Duration = Duration::from_secs(10);

/// How long a service's connection goes without a record in either ring
/// before it gives its pages of the region back (checked by the sweep
/// that also runs the hello deadline, every `QUIET`: so between one and
/// two periods after the last record).
pub(in crate::caps) const QUIET: Duration = Duration::from_secs(1);

/// `LIBCAPS_SHM`: 0 not read yet, 1 off, 2 on.
static SHM: AtomicU8 = AtomicU8::new(0);

/// May this process's connections use shared memory? (`LIBCAPS_SHM=0`
/// in the environment: no. Read once.)
pub(in crate::caps) fn shm_enabled() -> bool {
    match SHM.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let off = crate::diag::env_is_zero(c"LIBCAPS_SHM");
            SHM.store(if off { 1 } else { 2 }, Ordering::Relaxed);
            !off
        }
    }
}

/// Where a connection stands with shared memory.
pub(super) enum Mode {
    /// The socket carries everything (declined in the hello, or not a
    /// CAPS connection yet).
    Off,
    /// Both hellos said yes; no region yet. The client makes it with the
    /// first frame it sends; the service waits for the attach.
    Agreed,
    On(Box<Link>),
}

/// A connection's rings.
pub(super) struct Link {
    pub(super) tx: Producer,
    /// The ring we read, merged with the socket's frames: the service's
    /// from the attach on, the client's from the acknowledgement on.
    pub(super) rx: Option<Inbound>,
    /// The client's ring, until the service acknowledges the attach.
    pub(super) waiting: Option<Consumer>,
    /// Frames waiting for room in the peer's ring, in order.
    pub(super) backlog: VecDeque<([u8; HEADER_LEN], Vec<u8>)>,
    pub(super) backlog_bytes: usize,
    /// A doorbell is owed to the peer.
    pub(super) bell: bool,
    /// Since when the head of the backlog waits for room.
    pub(super) full_since: Option<Instant>,
    /// Drop the peer after [`STALL_LIMIT`] without room (the service's
    /// side).
    pub(super) stall_limit: Option<Duration>,
    /// Both rings' indices (our tail, our head) at the last quiet sweep.
    mark: Option<(u32, u32)>,
    /// Quiet: the pages are given back, the reader-asleep flag of the
    /// ring we read is set (the peer rings the doorbell for its next
    /// record) and the ring is not probed; the next record wakes it.
    pub(super) dormant: bool,
    /// Service, detach agreed in the hello: the detach record is sent.
    /// Nothing is written to ring 1 any more (our frames go on the
    /// socket); ring 0 is read until the client's detached record, then
    /// the region is unmapped.
    pub(super) sent_detach: bool,
    /// Service: the client's detached record came; once ring 0 is read
    /// to its end, the link goes.
    pub(super) peer_detached: bool,
}

/// What a frame written to the producer ring asks of the socket.
pub(super) enum Sent {
    /// In the ring (or waiting for room).
    Ring,
    /// Too big for the ring: a marker is in it, the frame goes on the
    /// socket now.
    Socket,
}

impl Link {
    pub(super) fn new(tx: Producer, rx: Option<Inbound>, waiting: Option<Consumer>) -> Link {
        Link {
            tx,
            rx,
            waiting,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            bell: false,
            full_since: None,
            stall_limit: None,
            mark: None,
            dormant: false,
            sent_detach: false,
            peer_detached: false,
        }
    }

    /// A quiet sweep (every [`QUIET`]): when neither ring moved since
    /// the last one and nothing is on its way (no frame waits for room,
    /// for its marker or for the peer to read it), give the pages back
    /// ([`Producer::give_back`]) and become dormant. True if it did now.
    pub(super) fn quiet(&mut self) -> bool {
        let Some(rx) = self.rx.as_mut() else {
            return false;
        };
        let mark = (self.tx.tail(), rx.ring().head());
        if self.dormant || self.mark.replace(mark) != Some(mark) {
            return false;
        }
        if !self.backlog.is_empty() || self.bell || !rx.settled() {
            return false;
        }
        // The peer's next record must ring: say we sleep (false: one came).
        if rx.ring().prepare_sleep() != Ok(true) {
            return false;
        }
        match self.tx.give_back() {
            Ok(true) => {}
            // Unread replies (or an index the next operation reports):
            // stay awake.
            _ => {
                rx.ring().woke();
                return false;
            }
        }
        self.dormant = true;
        self.mark = None;
        true
    }

    /// A record came or goes: no longer dormant. True if it was (the
    /// caller watches the ring again).
    pub(super) fn wake(&mut self) -> bool {
        if !std::mem::take(&mut self.dormant) {
            return false;
        }
        if let Some(rx) = self.rx.as_mut() {
            rx.ring().woke();
        }
        true
    }

    /// Write one frame (`hb` its encoded header) behind any that wait.
    pub(super) fn push(&mut self, hb: [u8; HEADER_LEN], body: &[u8]) -> Result<Sent, ShmError> {
        if self.backlog.is_empty() {
            match self.tx.push(&hb, body)? {
                Push::Written { doorbell } => {
                    self.bell |= doorbell;
                    return Ok(Sent::Ring);
                }
                // The frame itself wakes the reader.
                Push::OnSocket { .. } => return Ok(Sent::Socket),
                Push::Full => {}
            }
        }
        self.backlog_bytes += HEADER_LEN + body.len();
        self.backlog.push_back((hb, body.to_vec()));
        self.full_since.get_or_insert_with(Instant::now);
        Ok(Sent::Ring)
    }

    /// Move waiting frames into the ring as far as there is room; the
    /// frames too big for it are handed to `socket` in order. A peer that
    /// made no room for `stall_limit` is an error.
    pub(super) fn drain(&mut self, mut socket: impl FnMut(&[u8], &[u8])) -> Result<(), ShmError> {
        while let Some((hb, body)) = self.backlog.front() {
            match self.tx.push(hb, body)? {
                Push::Written { doorbell } => self.bell |= doorbell,
                Push::OnSocket { .. } => socket(hb, body),
                Push::Full => {
                    if self.tx.prepare_wait(body.len())? {
                        let since = *self.full_since.get_or_insert_with(Instant::now);
                        if let Some(limit) = self.stall_limit
                            && since.elapsed() >= limit
                        {
                            return Err(ShmError::Stalled(limit.as_secs()));
                        }
                        return Ok(());
                    }
                    continue;
                }
            }
            self.backlog_bytes -= HEADER_LEN + body.len();
            self.backlog.pop_front();
            self.full_since = None;
        }
        Ok(())
    }

    /// The probe of the ring we read, once we read one (none while
    /// dormant: the doorbell on the socket wakes the reader).
    pub(super) fn probe(&mut self) -> Option<Probe> {
        if self.dormant {
            return None;
        }
        self.rx.as_mut().map(|rx| rx.ring().probe())
    }
}

impl evloop::Probe for Probe {
    fn ready(&self) -> bool {
        Probe::ready(self)
    }
    fn sleep(&self) -> bool {
        Probe::sleep(self)
    }
    fn woke(&self) {
        Probe::woke(self)
    }
}
