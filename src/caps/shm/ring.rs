//! One direction of a shared-memory connection: a single-producer,
//! single-consumer byte ring of records (frame header, payload, padding to
//! 8 bytes) in a [`Region`](super::Region).
//!
//! Each side keeps its own index privately and only ever stores it into
//! the shared control block; the other side's index is loaded once per
//! operation, validated against ours, and then used as a private copy.
//! Every access to shared bytes is an atomic load or store of an aligned
//! `u32` or `u64` (relaxed for data; release/acquire for the indices), so
//! whatever the peer writes, we read some value it wrote and form no Rust
//! reference to plain data it can change. Positions in the data area are
//! masked with `capacity - 1` before every access: no index the peer
//! invents can reach outside the ring.
//!
//! Sleep protocol (both directions alike, a Dekker pair of full fences):
//! * reader: store `reader_asleep = 1`, fence, load `tail`; sleep only if
//!   the ring is still empty. Writer: store `tail`, fence, swap
//!   `reader_asleep` to 0; ring the doorbell if it was 1.
//! * writer short of space: store `writer_waiting = 1`, fence, load
//!   `head`; sleep only if still short. Reader: store `head`, fence, swap
//!   `writer_waiting` to 0; ring the doorbell if it was 1.
//!
//! With both fences, at least one side of each pair sees the other's
//! store, so a sleeper is never missed; the swap makes one doorbell per
//! sleep at most.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::sync::Arc;

use super::region::Mapping;
use super::{MARKER, ShmError, check_transport_header, transport_header};
use crate::caps::wire::{HEADER_LEN, Header, spare_body};

/// Records start on 8-byte boundaries.
pub const RECORD_ALIGN: usize = 8;

/// Offsets in a ring's control block (two 128-byte halves, so the
/// producer's and the consumer's stores never share a cache line or an
/// adjacent-line prefetch pair).
pub(super) const CTL_TAIL: usize = 0;
pub(super) const CTL_WRITER_WAITING: usize = 4;
pub(super) const CTL_HEAD: usize = 128;
pub(super) const CTL_READER_ASLEEP: usize = 132;
/// Bytes of one ring's control block.
pub(super) const CTL_LEN: usize = 256;

/// Bytes a frame with `body_len` payload bytes takes in a ring.
pub const fn record_len(body_len: usize) -> usize {
    (HEADER_LEN + body_len).next_multiple_of(RECORD_ALIGN)
}

/// Where one ring lives in a mapping (which it keeps alive).
pub(super) struct RingMem {
    _map: Arc<Mapping>,
    /// The control block: `CTL_LEN` bytes, 128-byte aligned.
    ctl: *mut u8,
    /// The data area: `cap` bytes, 8-byte aligned.
    data: *mut u8,
    /// Bytes in the data area: a power of two, at least 64.
    cap: u32,
}

// SAFETY: the pointers address shared memory accessed only atomically; the
// mapping is kept alive by `_map`.
unsafe impl Send for RingMem {}

impl RingMem {
    /// # Safety
    /// `ctl` and `data` are a ring's control block (`CTL_LEN` bytes,
    /// 128-aligned) and data area (`cap` bytes, 8-aligned; `cap` a power
    /// of two ≥ 64) inside `map`; the caller makes one producer and one
    /// consumer of it in this process, and the peer the other ends.
    pub(super) unsafe fn new(map: Arc<Mapping>, ctl: *mut u8, data: *mut u8, cap: u32) -> RingMem {
        RingMem {
            _map: map,
            ctl,
            data,
            cap,
        }
    }

    /// Another handle on the same ring (for a [`Probe`]).
    fn share(&self) -> RingMem {
        RingMem {
            _map: Arc::clone(&self._map),
            ctl: self.ctl,
            data: self.data,
            cap: self.cap,
        }
    }

    /// Free the pages of the data area (`MADV_REMOVE`): the producer's
    /// own ring, once the reader has read everything.
    fn remove_data(&self) -> Result<(), ShmError> {
        let off = self._map.offset_of(self.data);
        self._map.advise(off, self.cap as usize, libc::MADV_REMOVE)
    }

    /// Drop this process's view of the whole region (`MADV_DONTNEED`):
    /// the bytes stay in the memfd, the next access maps them again.
    fn drop_view(&self) -> Result<(), ShmError> {
        self._map.advise(0, self._map.len(), libc::MADV_DONTNEED)
    }

    /// The `u32` control word at `off`.
    fn word(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off + 4 <= CTL_LEN && off.is_multiple_of(4));
        // SAFETY: `off` is one of the CTL_* constants, inside the control
        // block and 4-aligned (the block is 128-aligned); the mapping lives
        // as long as the `Arc<Mapping>` held in `self`, which outlives
        // the returned reference (it borrows `self`). An `AtomicU32` may be
        // changed by others at any time: the reference is to an atomic.
        unsafe { &*self.ctl.add(off).cast::<AtomicU32>() }
    }

    /// The 8-byte data word at ring position `pos` (masked).
    fn data_word(&self, pos: u32) -> &AtomicU64 {
        let off = (pos & (self.cap - 1) & !(RECORD_ALIGN as u32 - 1)) as usize;
        // SAFETY: `off` is masked below `cap` and 8-aligned, and `cap` is a
        // multiple of 8, so the 8 bytes lie inside the data area, which is
        // 8-aligned and lives as long as `self`'s mapping (see `word`).
        unsafe { &*self.data.add(off).cast::<AtomicU64>() }
    }

    /// Copy `out.len()` bytes from ring position `pos` (8-aligned; the
    /// copy wraps at the end of the data area). Whole words are copied
    /// with constant-size copies (a slice of a computed length is a
    /// `memcpy` call per word).
    fn copy_out(&self, pos: u32, out: &mut [u8]) {
        debug_assert!((pos as usize).is_multiple_of(RECORD_ALIGN));
        let mut p = pos;
        let mut words = out.chunks_exact_mut(RECORD_ALIGN);
        for chunk in &mut words {
            chunk.copy_from_slice(&self.data_word(p).load(Ordering::Relaxed).to_ne_bytes());
            p = p.wrapping_add(RECORD_ALIGN as u32);
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            let w = self.data_word(p).load(Ordering::Relaxed).to_ne_bytes();
            tail.copy_from_slice(&w[..tail.len()]);
        }
    }

    /// `copy_out` into `out` (empty, with room for `len` bytes:
    /// `wire::spare_body`; never zeroed first: each word is appended as
    /// it is read).
    fn copy_out_vec(&self, pos: u32, len: usize, mut out: Vec<u8>) -> Vec<u8> {
        debug_assert!((pos as usize).is_multiple_of(RECORD_ALIGN));
        debug_assert!(out.is_empty() && out.capacity() >= len);
        let mut p = pos;
        for _ in 0..len / RECORD_ALIGN {
            out.extend_from_slice(&self.data_word(p).load(Ordering::Relaxed).to_ne_bytes());
            p = p.wrapping_add(RECORD_ALIGN as u32);
        }
        let tail = len % RECORD_ALIGN;
        if tail != 0 {
            let w = self.data_word(p).load(Ordering::Relaxed).to_ne_bytes();
            out.extend_from_slice(&w[..tail]);
        }
        out
    }

    /// Copy `bytes` to ring position `pos` (8-aligned, wrapping); a last
    /// partial word is padded with zeros. Returns the position after it.
    fn copy_in(&self, pos: u32, bytes: &[u8]) -> u32 {
        debug_assert!((pos as usize).is_multiple_of(RECORD_ALIGN));
        let mut p = pos;
        let mut words = bytes.chunks_exact(RECORD_ALIGN);
        for chunk in &mut words {
            let mut w = [0u8; RECORD_ALIGN];
            w.copy_from_slice(chunk);
            self.data_word(p)
                .store(u64::from_ne_bytes(w), Ordering::Relaxed);
            p = p.wrapping_add(RECORD_ALIGN as u32);
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut w = [0u8; RECORD_ALIGN];
            w[..tail.len()].copy_from_slice(tail);
            self.data_word(p)
                .store(u64::from_ne_bytes(w), Ordering::Relaxed);
            p = p.wrapping_add(RECORD_ALIGN as u32);
        }
        p
    }
}

/// Clear a sleep flag the other side set, and say whether it was set. A
/// plain load first: the flag sits on the other side's cache line, and an
/// unconditional swap would take that line away from it on every frame.
fn take_flag(flag: &AtomicU32) -> bool {
    flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::Relaxed) != 0
}

/// What [`Producer::push`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// The frame is in the ring. `doorbell`: the reader said it is asleep;
    /// send it a doorbell on the socket.
    Written { doorbell: bool },
    /// The frame is too big for the ring: a marker is in the ring and the
    /// caller must now send the frame on the socket, before any other
    /// socket frame of this direction. `doorbell` as above.
    OnSocket { doorbell: bool },
    /// Not enough free space (for the frame, or for the marker of a big
    /// one): nothing was written. Keep the frame, call
    /// [`Producer::prepare_wait`], and try again when woken.
    Full,
}

/// The writing side of one ring.
pub struct Producer {
    mem: RingMem,
    /// Our index: bytes ever published (free-running, wraps at 2^32).
    tail: u32,
    /// The reader's index as last validated.
    head_seen: u32,
}

impl Producer {
    /// The producer of ring `mem`, whose shared `tail` and `head` both
    /// hold `start` (8-aligned).
    pub(super) fn new(mem: RingMem, start: u32) -> Producer {
        Producer {
            mem,
            tail: start,
            head_seen: start,
        }
    }

    /// Bytes in the ring.
    pub fn capacity(&self) -> usize {
        self.mem.cap as usize
    }

    /// Does a frame of `body_len` payload bytes go through the ring (else
    /// it goes on the socket behind a marker)?
    pub fn fits(&self, body_len: usize) -> bool {
        record_len(body_len) <= self.capacity()
    }

    /// Free bytes, from the reader's `head` (copied once, validated: it
    /// can only have moved forward from where we last saw it, and not past
    /// our tail).
    fn free(&mut self) -> Result<u32, ShmError> {
        let head = self.mem.word(CTL_HEAD).load(Ordering::Acquire);
        let moved = head.wrapping_sub(self.head_seen);
        if moved > self.tail.wrapping_sub(self.head_seen)
            || !head.is_multiple_of(RECORD_ALIGN as u32)
        {
            return Err(ShmError::BadIndex("head", head, self.tail));
        }
        self.head_seen = head;
        Ok(self.mem.cap - self.tail.wrapping_sub(head))
    }

    /// Publish our tail and say whether the reader asked for a doorbell.
    fn publish(&mut self, tail: u32) -> bool {
        self.tail = tail;
        self.mem.word(CTL_TAIL).store(tail, Ordering::Release);
        fence(Ordering::SeqCst);
        take_flag(self.mem.word(CTL_READER_ASLEEP))
    }

    /// Append one frame (`header` as encoded by `wire::Header::encode`,
    /// `body` its payload of `body_len` bytes). The whole record is written
    /// before the tail that publishes it, so a reader never sees part of
    /// one. A frame whose record is bigger than the ring is not written: a
    /// marker is, and the caller sends the frame on the socket.
    pub fn push(&mut self, header: &[u8; HEADER_LEN], body: &[u8]) -> Result<Push, ShmError> {
        if u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize != body.len() {
            return Err(ShmError::Misuse("push: body_len is not the body's length"));
        }
        if !self.fits(body.len()) {
            return Ok(match self.push_record(&transport_header(MARKER), &[])? {
                Push::Written { doorbell } => Push::OnSocket { doorbell },
                other => other,
            });
        }
        self.push_record(header, body)
    }

    fn push_record(&mut self, header: &[u8; HEADER_LEN], body: &[u8]) -> Result<Push, ShmError> {
        let len = record_len(body.len()) as u32;
        // The space known free from the head seen last suffices most of
        // the time; only when it does not, load the reader's head (a
        // cache line the reader writes on every frame).
        let known = self.mem.cap - self.tail.wrapping_sub(self.head_seen);
        if known < len && self.free()? < len {
            return Ok(Push::Full);
        }
        let mut p = self.mem.copy_in(self.tail, header);
        p = self.mem.copy_in(p, body);
        debug_assert_eq!(p, self.tail.wrapping_add(len));
        Ok(Push::Written {
            doorbell: self.publish(p),
        })
    }

    /// Before sleeping until a frame of `body_len` payload bytes fits:
    /// ask the reader for a doorbell, then look again. `Ok(true)`: still
    /// no room, sleep (the reader rings when it frees space); `Ok(false)`:
    /// room now, push again.
    pub fn prepare_wait(&mut self, body_len: usize) -> Result<bool, ShmError> {
        let need = record_len(if self.fits(body_len) { body_len } else { 0 }) as u32;
        self.mem
            .word(CTL_WRITER_WAITING)
            .store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.free()? >= need {
            self.mem
                .word(CTL_WRITER_WAITING)
                .store(0, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    /// Bytes published and not yet consumed (as far as we know).
    pub fn pending(&mut self) -> Result<usize, ShmError> {
        Ok((self.mem.cap - self.free()?) as usize)
    }

    /// Our index (it moves with every record written).
    pub fn tail(&self) -> u32 {
        self.tail
    }

    /// The connection went quiet: if the reader has read everything
    /// (its head, validated, is our tail), free the pages of the data
    /// area (the reader never reads outside `[head, tail)`, so nothing it
    /// may read is lost) and drop this process's view of the whole
    /// region (the control page, the peer's ring). `Ok(false)`: unread
    /// records, nothing given back.
    pub fn give_back(&mut self) -> Result<bool, ShmError> {
        if self.pending()? != 0 {
            return Ok(false);
        }
        self.mem.remove_data()?;
        self.mem.drop_view()?;
        Ok(true)
    }

    /// Tests: where the region of this ring is mapped (address, bytes).
    #[cfg(test)]
    pub fn region_span(&self) -> (usize, usize) {
        (self.mem._map.addr(), self.mem._map.len())
    }

    /// Tests: after an error, carry on from the shared head as it is now
    /// (a real connection is dropped instead).
    #[cfg(test)]
    pub(super) fn resync(&mut self) {
        let head = self.mem.word(CTL_HEAD).load(Ordering::Acquire) & !7;
        self.tail = head;
        self.head_seen = head;
        self.mem.word(CTL_TAIL).store(head, Ordering::Release);
    }
}

/// What the reader found next in the ring ([`Consumer::next_header`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// A frame; take its payload with [`Consumer::take_body`].
    Frame(Header),
    /// A marker (already consumed): the next frame is on the socket.
    Marker,
}

/// A whole record, copied out of the ring ([`Consumer::pop`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Frame(Header, Vec<u8>),
    Marker,
}

/// The reading side of one ring.
pub struct Consumer {
    mem: RingMem,
    /// Our index: bytes ever consumed (free-running).
    head: u32,
    /// Largest payload a frame may carry (the receiver's limit).
    max_body: u32,
    /// A frame header validated by `next_header` whose payload is not taken yet,
    /// and the length of its record.
    pending: Option<(Header, u32)>,
    /// The writer asked for a doorbell when space frees (see `take_doorbell`).
    doorbell: bool,
    /// Our head as we stored it last, for the [`Probe`]s of this ring
    /// (the shared copy is the peer's to scribble on).
    mirror: Arc<AtomicU32>,
}

impl Consumer {
    /// The consumer of ring `mem` (shared indices at `start`), taking
    /// frames of up to `max_body` payload bytes.
    pub(super) fn new(mem: RingMem, start: u32, max_body: u32) -> Consumer {
        Consumer {
            mem,
            head: start,
            max_body,
            pending: None,
            doorbell: false,
            mirror: Arc::new(AtomicU32::new(start)),
        }
    }

    /// A cheap watch on this ring for a waiter that does not own the
    /// consumer (an event loop, a `poll` with a lock released).
    pub fn probe(&self) -> Probe {
        Probe {
            mem: self.mem.share(),
            head: Arc::clone(&self.mirror),
        }
    }

    /// Bytes in the ring.
    pub fn capacity(&self) -> usize {
        self.mem.cap as usize
    }

    /// Bytes the writer has published and we have not consumed: its tail,
    /// copied once and validated (whole 8-byte records, at most the ring).
    fn available(&self) -> Result<u32, ShmError> {
        let tail = self.mem.word(CTL_TAIL).load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.head);
        if avail > self.mem.cap || !avail.is_multiple_of(RECORD_ALIGN as u32) {
            return Err(ShmError::BadIndex("tail", tail, self.head));
        }
        Ok(avail)
    }

    /// Look at the next record. A frame's header is validated (every field
    /// as on the socket, its whole record published) and kept until
    /// [`Consumer::take_body`]; a marker is consumed at once.
    pub fn next_header(&mut self) -> Result<Option<Next>, ShmError> {
        if let Some((h, _)) = self.pending {
            return Ok(Some(Next::Frame(h)));
        }
        let avail = self.available()?;
        if avail == 0 {
            return Ok(None);
        }
        if avail < HEADER_LEN as u32 {
            return Err(ShmError::Truncated(HEADER_LEN as u32, avail));
        }
        let mut b = [0u8; HEADER_LEN];
        self.mem.copy_out(self.head, &mut b);
        if u16::from_le_bytes([b[0], b[1]]) == MARKER {
            check_transport_header(&b)?;
            self.advance(HEADER_LEN as u32);
            return Ok(Some(Next::Marker));
        }
        let h = Header::decode(&b, self.max_body).map_err(ShmError::BadRecord)?;
        let len = record_len(h.body_len as usize);
        if len > avail as usize {
            return Err(ShmError::Truncated(len as u32, avail));
        }
        self.pending = Some((h, len as u32));
        Ok(Some(Next::Frame(h)))
    }

    /// Copy the payload of the frame [`Consumer::next_header`] returned into
    /// `out` (exactly `body_len` bytes) and consume its record.
    pub fn take_body(&mut self, out: &mut [u8]) -> Result<(), ShmError> {
        let Some((h, len)) = self.pending else {
            return Err(ShmError::Misuse("take_body with no frame pending"));
        };
        if out.len() != h.body_len as usize {
            return Err(ShmError::Misuse("take_body slice of the wrong size"));
        }
        self.mem
            .copy_out(self.head.wrapping_add(HEADER_LEN as u32), out);
        self.pending = None;
        self.advance(len);
        Ok(())
    }

    /// The next whole record, copied out, or `None` when the ring is empty.
    pub fn pop(&mut self) -> Result<Option<Record>, ShmError> {
        self.pop_pooled(&mut Vec::new())
    }

    /// [`Consumer::pop`], copying a frame's payload into the last buffer
    /// of `spares` when there is one (no allocation unless it is too
    /// small).
    pub fn pop_pooled(&mut self, spares: &mut Vec<Vec<u8>>) -> Result<Option<Record>, ShmError> {
        match self.next_header()? {
            None => Ok(None),
            Some(Next::Marker) => Ok(Some(Record::Marker)),
            Some(Next::Frame(h)) => {
                let Some((_, len)) = self.pending.take() else {
                    return Err(ShmError::Misuse("no frame pending after its header"));
                };
                let body_len = h.body_len as usize;
                let out = spare_body(spares, body_len);
                let body =
                    self.mem
                        .copy_out_vec(self.head.wrapping_add(HEADER_LEN as u32), body_len, out);
                self.advance(len);
                Ok(Some(Record::Frame(h, body)))
            }
        }
    }

    /// Consume `len` bytes: publish our head, and note whether the writer
    /// waits for space.
    fn advance(&mut self, len: u32) {
        self.head = self.head.wrapping_add(len);
        self.mirror.store(self.head, Ordering::Relaxed);
        self.mem.word(CTL_HEAD).store(self.head, Ordering::Release);
        fence(Ordering::SeqCst);
        if take_flag(self.mem.word(CTL_WRITER_WAITING)) {
            self.doorbell = true;
        }
    }

    /// Did the writer, waiting for space, ask for a doorbell since the last
    /// call? Call after a batch of pops; if true, send one on the socket.
    pub fn take_doorbell(&mut self) -> bool {
        std::mem::take(&mut self.doorbell)
    }

    /// Before sleeping on the socket: tell the writer we sleep, then look
    /// again. True: still empty, sleep (the writer rings for its next
    /// frame). False: something came meanwhile; the flag is withdrawn,
    /// read it.
    pub fn prepare_sleep(&mut self) -> Result<bool, ShmError> {
        if self.pending.is_some() {
            return Ok(false);
        }
        self.mem.word(CTL_READER_ASLEEP).store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.available()? != 0 {
            self.woke();
            return Ok(false);
        }
        Ok(true)
    }

    /// After a sleep (or a `prepare_sleep` not followed by one): withdraw
    /// the asleep flag, so the writer stops ringing.
    pub fn woke(&mut self) {
        self.mem.word(CTL_READER_ASLEEP).store(0, Ordering::Relaxed);
    }

    /// Our index (it moves with every record read).
    pub fn head(&self) -> u32 {
        self.head
    }

    /// Tests: after an error, carry on from the shared tail as it is now.
    #[cfg(test)]
    pub(super) fn resync(&mut self) {
        self.pending = None;
        self.head = self.mem.word(CTL_TAIL).load(Ordering::Acquire) & !7;
        self.mem.word(CTL_HEAD).store(self.head, Ordering::Release);
    }

    /// Is a frame published and not consumed? (An error reads as yes: the
    /// next `next_header` reports it.)
    pub fn has_data(&self) -> bool {
        self.pending.is_some() || self.available() != Ok(0)
    }
}

/// A watch on the ring a [`Consumer`] reads, for its waiter: "is there
/// something?" (one load of the producer's `tail`, compared with our own
/// head: no system call), and the sleep flag of the protocol. Any tail
/// other than our head reads as "something": a tail the peer invented
/// then fails the consumer's validation, which drops the connection.
pub struct Probe {
    mem: RingMem,
    head: Arc<AtomicU32>,
}

impl Probe {
    /// Has the producer published past our head?
    pub fn ready(&self) -> bool {
        self.mem.word(CTL_TAIL).load(Ordering::Acquire) != self.head.load(Ordering::Relaxed)
    }

    /// Before sleeping: say so, then look again. True: still empty, sleep
    /// (the producer rings for its next record); false: something came,
    /// the flag is withdrawn.
    pub fn sleep(&self) -> bool {
        self.mem.word(CTL_READER_ASLEEP).store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.ready() {
            self.woke();
            return false;
        }
        true
    }

    /// After the sleep: withdraw the flag.
    pub fn woke(&self) {
        self.mem.word(CTL_READER_ASLEEP).store(0, Ordering::Relaxed);
    }
}
