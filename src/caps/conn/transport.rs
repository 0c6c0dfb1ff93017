//! The transport of one connection: framing and buffered, non-blocking
//! input and output over its socket. Everything above it (the service
//! side in `conn::service`, the v1 and v2 faces) sees frames, never
//! bytes: a transport that moves frames another way (a ring in shared
//! memory, negotiated in the hello) replaces the body of this type and
//! nothing else.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

use super::shmlink::{Link, Mode, STALL_LIMIT, Sent};
use super::uring::{Bells, Rung};
use super::{EV_IN, EV_OUT, HELLO_DEADLINE};
use crate::caps::errno::Errno;
use crate::caps::shm::fdpass::{recv_with_fds, send_with_fds};
use crate::caps::shm::{
    ATTACH, ATTACHED, DEFAULT_RING, DETACH, DETACHED, DOORBELL, Inbound, Probe, Region, ShmError,
    Side, check_transport_header, doorbell, transport_header,
};
use crate::caps::wire::{Fed, Frame, FrameReader, HEADER_LEN, HELLO_LEN, Header, WireError};
use crate::cpu::evloop::{self, EV_PROBE, Token};
use crate::warn;

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Read buffers kept for reuse by the connections of one thread.
const SPARE_CHUNKS: usize = 4;

/// The largest output buffer kept as this thread's spare.
const SPARE_OUT_MAX: usize = 64 * 1024;

/// Payload buffers one connection keeps for reuse ([`Transport::recycle`]):
/// as many as one pump reads (a pipelining peer's 64 frames; glibc's
/// per-thread cache holds 7 chunks of a size, so a malloc per frame fell
/// into its slower paths), each of at most `SPARE_BODY_MAX` bytes.
const SPARE_BODIES: usize = 64;
const SPARE_BODY_MAX: usize = 512;

/// Buffers no connection of this thread uses now. A connection takes a
/// read buffer when it reads and gives it back as soon as it consumed
/// every byte read (a partial frame is the frame reader's), and the output
/// buffer when it queues output, given back once all is written: a quiet
/// connection holds neither, and a busy thread does not allocate one per
/// read or per round trip (or doorbell).
#[derive(Default)]
struct Spares {
    /// At most `SPARE_CHUNKS` read buffers of `READ_CHUNK` bytes.
    read: Vec<Box<[u8]>>,
    /// One output buffer of at most `SPARE_OUT_MAX` bytes (empty: none).
    out: Vec<u8>,
}

thread_local! {
    static SPARES: RefCell<Spares> = const {
        RefCell::new(Spares {
            read: Vec::new(),
            out: Vec::new(),
        })
    };
}

/// Run `f` on this thread's spares; `None` while the thread is exiting
/// (or, re-entered, they are in use): the caller does without.
fn spares<R>(f: impl FnOnce(&mut Spares) -> R) -> Option<R> {
    SPARES
        .try_with(|s| s.try_borrow_mut().ok().map(|mut s| f(&mut s)))
        .ok()
        .flatten()
}

/// `out`, given this thread's spare output buffer if it has none.
fn out_buf(out: &mut Vec<u8>) -> &mut Vec<u8> {
    if out.capacity() == 0 {
        spares(|s| std::mem::swap(out, &mut s.out));
    }
    out
}

/// A read buffer of `READ_CHUNK` bytes: a spare one, else a new one.
fn take_chunk() -> Box<[u8]> {
    spares(|s| s.read.pop())
        .flatten()
        .unwrap_or_else(|| vec![0u8; READ_CHUNK].into_boxed_slice())
}

/// Free this thread's spare read and output buffers (a service that shed
/// many connections gives its memory back).
pub(super) fn drop_spare_buffers() {
    spares(|s| *s = Spares::default());
}

/// Give read buffer `b` back (kept if the thread has fewer than
/// `SPARE_CHUNKS` spare ones, else freed).
fn give_back(b: Box<[u8]>) {
    if b.len() == READ_CHUNK {
        spares(|s| {
            if s.read.len() < SPARE_CHUNKS {
                s.read.push(b);
            }
        });
    }
}

/// One connected socket: buffered input and output, its event loop
/// registration (v1) and the peer's hello as far as it came.
pub(in crate::caps) struct Transport {
    fd: Option<OwnedFd>,
    /// The cpu event loop's registration (v1; v2 polls).
    pub(in crate::caps) token: Option<Token>,
    /// Bytes read but not yet consumed: `inbuf[in_pos..in_end]`; taken
    /// (`take_chunk`) when the socket is read and given back once every
    /// byte in it is consumed: empty while the connection is quiet.
    inbuf: Box<[u8]>,
    in_pos: usize,
    in_end: usize,
    /// The last read emptied the socket; wait for the next event.
    drained: bool,
    reader: FrameReader,
    /// Payload buffers of frames the face has consumed, for the next
    /// frames read (`recycle`); given back when the connection goes quiet
    /// (`quiet_bodies`): empty while it is.
    bodies: Vec<Vec<u8>>,
    out: Vec<u8>,
    out_pos: usize,
    /// The events the registration asks for (`EV_IN`, `EV_OUT`).
    pub(in crate::caps) events: u32,
    pub(in crate::caps) dead: bool,
    /// Largest payload accepted from the peer.
    max_body: u32,
    /// The peer's hello as far as it came (read apart from `inbuf`, so a
    /// connection that never completes it costs no read buffer).
    hello: [u8; HELLO_LEN],
    hello_got: usize,
    /// When the connection was made (a service drops it if its hello
    /// is not complete by `HELLO_DEADLINE`).
    pub(in crate::caps) since: Instant,
    /// Shared memory: off, agreed in the hello, or on.
    shm: Mode,
    /// Which end we are (meaningful once shared memory is agreed).
    side: Side,
    /// Service: the client takes detach records (`wire::HELLO_DETACH`):
    /// a quiet connection's region is given up, not only its pages.
    detach: bool,
    /// Descriptors received before the attach record (service).
    fds_in: Vec<OwnedFd>,
    /// A descriptor to send with the byte at this offset of `out`.
    out_fd: Option<(usize, OwnedFd)>,
    /// The shared-memory transport failed: the connection is to be
    /// dropped (its one log line is written).
    broken: Option<ShmError>,
    /// The probe of our ring is watched by the event loop.
    probing: bool,
    /// Log lines about this connection: the function, and the words
    /// before the reason it is dropped.
    func: &'static str,
    label: String,
}

/// How reading a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::caps) enum ReadEnd {
    Eof,
    Errno(Errno),
    Protocol(WireError),
}

impl std::fmt::Display for ReadEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadEnd::Eof => write!(f, "connection closed"),
            ReadEnd::Errno(e) => write!(f, "{e}"),
            ReadEnd::Protocol(w) => write!(f, "protocol error: {w}"),
        }
    }
}

impl Transport {
    /// A transport over connected socket `fd` (non-blocking) that takes
    /// payloads of at most `max_body` bytes from the peer.
    pub(in crate::caps) fn new(fd: OwnedFd, max_body: u32) -> Transport {
        Transport {
            fd: Some(fd),
            token: None,
            inbuf: Box::default(),
            in_pos: 0,
            in_end: 0,
            drained: false,
            reader: FrameReader::default(),
            bodies: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            events: EV_IN,
            dead: false,
            max_body,
            hello: [0; HELLO_LEN],
            hello_got: 0,
            since: Instant::now(),
            shm: Mode::Off,
            side: Side::Client,
            detach: false,
            fds_in: Vec::new(),
            out_fd: None,
            broken: None,
            probing: false,
            func: "libcaps",
            label: String::new(),
        }
    }

    /// Both hellos agreed to shared memory: we are `side`; a failure of
    /// it is logged as `func: label: reason`.
    pub(in crate::caps) fn agree_shm(&mut self, side: Side, func: &'static str, label: String) {
        self.shm = Mode::Agreed;
        self.side = side;
        self.func = func;
        self.label = label;
    }

    /// Service: the client offered to take detach records (the hello).
    pub(in crate::caps) fn agree_detach(&mut self, yes: bool) {
        self.detach = yes;
    }

    /// The probe of the ring we read (v2 waiters poll it themselves).
    pub(in crate::caps) fn probe(&mut self) -> Option<Probe> {
        match &mut self.shm {
            Mode::On(link) if self.broken.is_none() => link.probe(),
            _ => None,
        }
    }

    /// A quiet sweep (service side, every `shmlink::QUIET`): a connection
    /// whose rings did not move since the last sweep gives its pages of
    /// the region back and stops being probed until its next record
    /// (`Link::quiet`). True if it did now.
    /// With detach agreed, the service also tells the client to give
    /// the region up (a detach record; `detached` unmaps it here).
    pub(in crate::caps) fn quiet(&mut self) -> bool {
        self.quiet_bodies();
        let went = match &mut self.shm {
            Mode::On(link) if self.broken.is_none() => link.quiet(),
            _ => false,
        };
        if !went {
            return false;
        }
        self.sync_probe();
        if let Mode::On(link) = &mut self.shm
            && self.detach
            && self.side == Side::Service
            && !link.sent_detach
        {
            link.sent_detach = true;
            out_buf(&mut self.out).extend_from_slice(&transport_header(DETACH));
            // A failure shows at the next read (the peer's end).
            let _ = self.flush();
        }
        true
    }

    /// The client got the detach record: the service has written its
    /// last record to ring 1, and we have read them all (else it broke
    /// the protocol). Unmap the region, answer with the detached record
    /// (after every record we wrote to ring 0), and send the frames that
    /// waited for room in ring 0 with the next region.
    fn detach_client(&mut self) -> Result<(), ShmError> {
        let Mode::On(link) = &mut self.shm else {
            return Err(ShmError::BadRecord(WireError::BadKind(DETACH)));
        };
        let Some(rx) = link.rx.as_mut() else {
            return Err(ShmError::BadRecord(WireError::BadKind(DETACH)));
        };
        if rx.ring().has_data() || !rx.settled() {
            return Err(ShmError::BadRecord(WireError::Unexpected(
                "detach with records unread",
            )));
        }
        let backlog = std::mem::take(&mut link.backlog);
        self.shm = Mode::Agreed;
        self.sync_probe();
        out_buf(&mut self.out).extend_from_slice(&transport_header(DETACHED));
        for (hb, body) in backlog {
            self.push_encoded(hb, &body);
        }
        Ok(())
    }

    /// Service: the client's detached record came and ring 0 is read to
    /// its end: the link goes (the region is unmapped: nobody maps it
    /// any more, the memfd is freed); the client's next frame comes with
    /// a new attach.
    fn detached(&mut self) -> Result<(), ShmError> {
        if let Mode::On(link) = &mut self.shm
            && let Some(rx) = link.rx.as_mut()
            && !rx.settled()
        {
            return Err(ShmError::BadRecord(WireError::Unexpected(
                "detached with a frame owed",
            )));
        }
        self.shm = Mode::Agreed;
        self.sync_probe();
        Ok(())
    }

    /// Are this connection's rings in use and not dormant (the quiet
    /// sweep has work to do)?
    pub(in crate::caps) fn ring_awake(&self) -> bool {
        matches!(&self.shm, Mode::On(link) if link.rx.is_some() && !link.dormant)
            && self.broken.is_none()
    }

    /// A record came or goes: a dormant connection is watched again.
    fn wake(&mut self) {
        if let Mode::On(link) = &mut self.shm
            && link.dormant
            && link.wake()
        {
            self.sync_probe();
        }
    }

    /// Watch (or stop watching) the probe of our ring in the event loop
    /// (v1): on while input is wanted.
    fn sync_probe(&mut self) {
        let Some(t) = self.token else { return };
        let want = self.events & EV_IN != 0 && !self.dead;
        let probe = if want { self.probe() } else { None };
        if probe.is_some() || self.probing {
            self.probing = probe.is_some();
            evloop::set_probe(t, probe.map(|p| Box::new(p) as Box<dyn evloop::Probe>));
        }
    }

    /// The shared-memory transport failed: one log line, and the
    /// connection is to be dropped (reads and writes fail from now on).
    fn fail(&mut self, e: ShmError) -> Errno {
        if self.broken.is_none() {
            warn!(self.func, "{}: {e}", self.label);
            self.broken = Some(e);
        }
        e.errno()
    }

    /// The client's first frame: make the region, queue the attach
    /// record with its descriptor. If no region can be made, the socket
    /// carries the connection (traced).
    fn make_region(&mut self) {
        let mut region = match Region::create(DEFAULT_RING) {
            Ok(r) => r,
            Err(e) => {
                crate::trace!(
                    self.func,
                    "no shared memory ({e}): the socket carries the connection"
                );
                self.shm = Mode::Off;
                return;
            }
        };
        let Some(fd) = region.take_fd() else {
            self.shm = Mode::Off;
            return;
        };
        let (tx, rx) = region.split(Side::Client, self.max_body);
        let mut rec = transport_header(ATTACH);
        rec[32..40].copy_from_slice(&(DEFAULT_RING as u64).to_le_bytes());
        self.out_fd = Some((self.out.len(), fd));
        out_buf(&mut self.out).extend_from_slice(&rec);
        self.shm = Mode::On(Box::new(Link::new(tx, None, Some(rx))));
    }

    /// A transport record read from the socket.
    fn control(&mut self, b: &[u8; HEADER_LEN]) -> Result<(), ShmError> {
        let kind = u16::from_le_bytes([b[0], b[1]]);
        match (kind, &mut self.shm, self.side) {
            (DOORBELL, Mode::Agreed | Mode::On(_), _) => check_transport_header(b),
            (ATTACH, Mode::Agreed, Side::Service) => {
                let mut rest = *b;
                rest[32..40].fill(0);
                check_transport_header(&rest)?;
                let ring = u64::from_le_bytes(b[32..40].try_into().unwrap());
                if ring != DEFAULT_RING as u64 {
                    return Err(ShmError::BadRegion("ring size", ring));
                }
                if self.fds_in.len() != 1 {
                    return Err(ShmError::BadRegion(
                        "descriptors with the attach",
                        self.fds_in.len() as u64,
                    ));
                }
                let fd = self.fds_in.pop().unwrap();
                let region = Region::attach(fd, DEFAULT_RING)?;
                let (tx, rx) = region.split(Side::Service, self.max_body);
                let mut link = Link::new(tx, Some(Inbound::new(rx)), None);
                link.stall_limit = Some(STALL_LIMIT);
                self.shm = Mode::On(Box::new(link));
                out_buf(&mut self.out).extend_from_slice(&transport_header(ATTACHED));
                self.sync_probe();
                Ok(())
            }
            (ATTACHED, Mode::On(link), Side::Client) if link.waiting.is_some() => {
                check_transport_header(b)?;
                link.rx = link.waiting.take().map(Inbound::new);
                self.sync_probe();
                Ok(())
            }
            (DETACH, Mode::On(_), Side::Client) => {
                check_transport_header(b)?;
                self.detach_client()
            }
            (DETACHED, Mode::On(link), Side::Service)
                if link.sent_detach && !link.peer_detached =>
            {
                check_transport_header(b)?;
                // Read ring 0 to its end (what the client wrote before
                // this record is there now), then let go (`detached`).
                link.peer_detached = true;
                link.dormant = false;
                Ok(())
            }
            _ => Err(ShmError::BadRecord(WireError::BadKind(kind))),
        }
    }

    /// The socket (-1 once closed).
    pub(in crate::caps) fn raw(&self) -> i32 {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    pub(in crate::caps) fn set_events(&mut self, events: u32) {
        if events != self.events {
            self.events = events;
            if let Some(t) = self.token {
                evloop::modify(t, events);
            }
        }
    }

    /// Bytes queued and not yet written (to the socket or the ring).
    pub(in crate::caps) fn queued(&self) -> usize {
        let backlog = match &self.shm {
            Mode::On(link) => link.backlog_bytes,
            _ => 0,
        };
        self.out.len() - self.out_pos + backlog
    }

    /// Readiness `bits` (epoll's, or `EV_IN` after a `poll`): input may
    /// have come, so the next read tries the socket again; output is
    /// written when the socket takes it. An error: the connection failed.
    pub(in crate::caps) fn ready(&mut self, bits: u32) -> Result<(), Errno> {
        if bits & !(EV_OUT | EV_PROBE) != 0 {
            self.input_ready();
        }
        if bits & EV_OUT != 0 {
            self.flush()?;
        }
        Ok(())
    }

    /// Input may have come (a poll said so, or the caller polls no
    /// longer): the next read tries the socket.
    pub(in crate::caps) fn input_ready(&mut self) {
        self.drained = false;
    }

    /// As [`Transport::input_ready`], except for a connection whose frames
    /// come through a ring: its socket (doorbells, big frames, the peer's
    /// death) is read once a poll said it is readable.
    pub(in crate::caps) fn input_ready_unless_ring(&mut self) {
        let ring = matches!(&self.shm, Mode::On(link) if link.rx.is_some());
        if !ring || self.broken.is_some() {
            self.drained = false;
        }
    }

    /// Read the socket again even if the last read emptied it (a paused
    /// connection resumed).
    pub(in crate::caps) fn rearm(&mut self) {
        self.drained = false;
        let ev = self.events | EV_IN;
        self.set_events(ev);
        self.sync_probe();
    }

    /// Stop asking for input events (back-pressure).
    pub(in crate::caps) fn pause(&mut self) {
        let ev = self.events & !EV_IN;
        self.set_events(ev);
        self.sync_probe();
    }

    /// Is output waiting for the socket to take it? (Frames waiting for
    /// room in the peer's ring wait for a doorbell, not for the socket.)
    pub(in crate::caps) fn wants_out(&self) -> bool {
        self.out_pos < self.out.len()
    }

    /// Move frames waiting for room into the peer's ring, ring the
    /// peer's doorbell if it asked for one, and write as much queued
    /// output as the socket takes.
    pub(in crate::caps) fn flush(&mut self) -> Result<(), Errno> {
        self.flush_with(None)
    }

    /// As [`Transport::flush`], except that a doorbell owed on a socket
    /// with nothing else to write goes into `bells` under `key`, to be
    /// rung with the pass's others; its result comes back through
    /// [`Transport::bell_rung`].
    pub(in crate::caps) fn flush_into(
        &mut self,
        bells: &mut Bells,
        key: usize,
    ) -> Result<(), Errno> {
        self.flush_with(Some((bells, key)))
    }

    /// The doorbell taken by [`Transport::flush_into`] was rung: if not
    /// (or not whole), write it (the rest of it) the old way, which meets
    /// the same condition again (a full socket: kept for `EPOLLOUT`; a
    /// gone peer: the error).
    pub(in crate::caps) fn bell_rung(&mut self, rung: Rung) -> Result<(), Errno> {
        match rung {
            Rung::Sent => Ok(()),
            Rung::Part(n) => {
                out_buf(&mut self.out).extend_from_slice(&doorbell()[n.min(HEADER_LEN)..]);
                self.flush()
            }
            Rung::Again => {
                if let Mode::On(link) = &mut self.shm {
                    link.bell = true;
                }
                self.flush()
            }
        }
    }

    fn flush_with(&mut self, bells: Option<(&mut Bells, usize)>) -> Result<(), Errno> {
        if let Some(e) = self.broken {
            return Err(e.errno());
        }
        if let Mode::On(link) = &mut self.shm {
            let out = &mut self.out;
            let drained = link.drain(|hb, body| {
                let out = out_buf(out);
                out.extend_from_slice(hb);
                out.extend_from_slice(body);
            });
            if let Err(e) = drained {
                return Err(self.fail(e));
            }
            // Output already queued wakes the peer as well as a doorbell.
            if std::mem::take(&mut link.bell) && self.out_pos == self.out.len() {
                let fd = self.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
                let taken = match bells {
                    Some((b, key)) if self.out_fd.is_none() => b.take(fd, key),
                    _ => false,
                };
                if !taken {
                    out_buf(&mut self.out).extend_from_slice(&doorbell());
                }
            }
        }
        while self.out_pos < self.out.len() {
            let sent: Result<usize, Errno> = match &self.out_fd {
                Some((at, fd)) if *at == self.out_pos => {
                    let Some(sock) = self.fd.as_ref() else {
                        return Err(Errno::EBADF);
                    };
                    let r = send_with_fds(sock.as_fd(), &self.out[self.out_pos..], &[fd.as_fd()])
                        .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)));
                    if r.is_ok() {
                        self.out_fd = None;
                    }
                    r
                }
                other => {
                    let end = other.as_ref().map_or(self.out.len(), |(at, _)| *at);
                    // SAFETY: the slice is valid; MSG_NOSIGNAL keeps SIGPIPE away.
                    let n = unsafe {
                        libc::send(
                            self.raw(),
                            self.out[self.out_pos..end].as_ptr().cast(),
                            end - self.out_pos,
                            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                        )
                    };
                    if n < 0 {
                        Err(Errno::last())
                    } else {
                        Ok(n as usize)
                    }
                }
            };
            match sent {
                Ok(n) => self.out_pos += n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(e),
            }
        }
        if self.out_pos == self.out.len() {
            self.release_out();
        }
        let want_out = self.wants_out();
        let events = (self.events & !EV_OUT) | if want_out { EV_OUT } else { 0 };
        self.set_events(events);
        Ok(())
    }

    /// Queue one frame: in the ring of a connection in shared memory (the
    /// client makes the region with its first frame), else on the socket.
    pub(in crate::caps) fn push_frame(&mut self, h: &Header, body: &[u8]) {
        self.push_encoded(h.encode(), body);
    }

    /// `push_frame` of an encoded header. After a detach record (service)
    /// the frame goes on the socket: the ring is not written again.
    fn push_encoded(&mut self, hb: [u8; HEADER_LEN], body: &[u8]) {
        if matches!(self.shm, Mode::Agreed) && self.side == Side::Client {
            self.make_region();
        }
        let ring = !matches!(&self.shm, Mode::On(link) if link.sent_detach);
        if ring {
            self.wake();
        }
        if let Mode::On(link) = &mut self.shm
            && ring
        {
            if self.broken.is_some() {
                return;
            }
            match link.push(hb, body) {
                Ok(Sent::Ring) => return,
                Ok(Sent::Socket) => {}
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
        let out = out_buf(&mut self.out);
        out.extend_from_slice(&hb);
        out.extend_from_slice(body);
    }

    /// Queue raw bytes (a hello).
    pub(in crate::caps) fn push_bytes(&mut self, b: &[u8]) {
        out_buf(&mut self.out).extend_from_slice(b);
    }

    /// Read more bytes behind the unconsumed input: Ok(true) if some
    /// arrived, Ok(false) if none are available now. A short read means
    /// the socket is empty for now; the next readiness event clears
    /// `drained` (level-triggered epoll), which saves a `recv` that would
    /// only say `EAGAIN`.
    fn fill(&mut self) -> Result<bool, ReadEnd> {
        if self.drained {
            self.release_inbuf();
            return Ok(false);
        }
        if self.inbuf.is_empty() {
            self.inbuf = take_chunk();
        }
        if self.in_pos == self.in_end {
            self.in_pos = 0;
            self.in_end = 0;
        } else if self.in_end == READ_CHUNK {
            self.inbuf.copy_within(self.in_pos..self.in_end, 0);
            self.in_end -= self.in_pos;
            self.in_pos = 0;
        }
        let room = READ_CHUNK - self.in_end;
        // Until the attach record came, the bytes that carry its
        // descriptor must be read with `recvmsg` (a plain read would make
        // the kernel discard the descriptor).
        // (Also once a detach record went: the client's new attach may
        // come with the same read as its detached record.)
        let want_fds = self.side == Side::Service
            && match &self.shm {
                Mode::Agreed => true,
                Mode::On(link) => link.sent_detach,
                Mode::Off => false,
            };
        loop {
            let got: Result<usize, Errno> = if want_fds {
                let Some(sock) = self.fd.as_ref() else {
                    return Err(ReadEnd::Errno(Errno::EBADF));
                };
                recv_with_fds(
                    sock.as_fd(),
                    &mut self.inbuf[self.in_end..],
                    &mut self.fds_in,
                )
                .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))
            } else {
                // SAFETY: `inbuf[in_end..]` is writable for `room` bytes.
                let n = unsafe {
                    libc::recv(
                        self.raw(),
                        self.inbuf[self.in_end..].as_mut_ptr().cast(),
                        room,
                        libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    Err(Errno::last())
                } else {
                    Ok(n as usize)
                }
            };
            if self.fds_in.len() > 1 {
                let e =
                    ShmError::BadRegion("descriptors before the attach", self.fds_in.len() as u64);
                return Err(ReadEnd::Errno(self.fail(e)));
            }
            match got {
                Ok(0) => return Err(ReadEnd::Eof),
                Ok(n) => {
                    self.in_end += n;
                    self.drained = n < room;
                    return Ok(true);
                }
                Err(e) => match e {
                    Errno::EINTR => continue,
                    Errno::EAGAIN => {
                        self.drained = true;
                        self.release_inbuf();
                        return Ok(false);
                    }
                    e => return Err(ReadEnd::Errno(e)),
                },
            }
        }
    }

    /// The next whole frame from the input: from the ring we read (in
    /// the peer's order with the big frames from the socket), reading the
    /// socket as needed.
    pub(in crate::caps) fn next_frame(&mut self) -> Result<Option<Frame>, ReadEnd> {
        loop {
            if let Some(e) = self.broken {
                return Err(ReadEnd::Errno(e.errno()));
            }
            // A dormant connection's ring is not looked at (that would
            // map its pages again, and their neighbours: fault-around)
            // until the socket brings something: the peer's next record
            // comes with a doorbell.
            if let Mode::On(link) = &mut self.shm
                && !link.dormant
                && let Some(rx) = link.rx.as_mut()
            {
                match rx.next_frame_pooled(&mut self.bodies) {
                    Ok(Some(f)) => {
                        if rx.ring().take_doorbell() {
                            link.bell = true;
                            self.flush().map_err(ReadEnd::Errno)?;
                        }
                        self.wake();
                        return Ok(Some(f));
                    }
                    Ok(None) if link.peer_detached => {
                        if let Err(e) = self.detached() {
                            return Err(ReadEnd::Errno(self.fail(e)));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return Err(ReadEnd::Errno(self.fail(e))),
                }
            }
            let Some(item) = self.socket_item()? else {
                return Ok(None);
            };
            self.wake();
            match item {
                Fed::Control(b) => {
                    if let Err(e) = self.control(&b) {
                        return Err(ReadEnd::Errno(self.fail(e)));
                    }
                    // An acknowledgement to send, or a doorbell: the peer
                    // made room for the frames waiting for it.
                    if self.wants_out() || self.queued() > 0 {
                        self.flush().map_err(ReadEnd::Errno)?;
                    }
                }
                Fed::Frame(f) => match &mut self.shm {
                    Mode::On(link) if link.rx.is_some() => {
                        let rx = link.rx.as_mut().unwrap();
                        if let Err(e) = rx.socket_frame(f) {
                            return Err(ReadEnd::Errno(self.fail(e)));
                        }
                    }
                    _ => return Ok(Some(f)),
                },
            }
        }
    }

    /// The next frame or transport record from the socket.
    fn socket_item(&mut self) -> Result<Option<Fed>, ReadEnd> {
        let control = !matches!(self.shm, Mode::Off);
        loop {
            if self.in_pos == self.in_end && !self.fill()? {
                return Ok(None);
            }
            let (n, item) = self
                .reader
                .feed_pooled(
                    &self.inbuf[self.in_pos..self.in_end],
                    self.max_body,
                    control,
                    &mut self.bodies,
                )
                .map_err(ReadEnd::Protocol)?;
            self.in_pos += n;
            if self.in_pos == self.in_end {
                self.release_inbuf();
            }
            if item.is_some() {
                return Ok(item);
            }
        }
    }

    /// The face has consumed the payload of a frame this connection read:
    /// keep its buffer for the next one (unless `SPARE_BODIES` are kept
    /// already, or it is bigger than `SPARE_BODY_MAX`).
    pub(in crate::caps) fn recycle(&mut self, body: Vec<u8>) {
        self.recycle_upto(body, SPARE_BODIES);
    }

    /// As [`Transport::recycle`], unless `most` buffers are kept already
    /// (a client keeps one more than it has requests outstanding: one,
    /// for the next reply, once it has none).
    pub(in crate::caps) fn recycle_upto(&mut self, body: Vec<u8>, most: usize) {
        let cap = body.capacity();
        if cap > 0 && cap <= SPARE_BODY_MAX && self.bodies.len() < most.min(SPARE_BODIES) {
            self.bodies.push(body);
        }
    }

    /// The connection went quiet (nothing of it is outstanding): free the
    /// payload buffers kept for reuse.
    pub(in crate::caps) fn quiet_bodies(&mut self) {
        if self.bodies.capacity() != 0 {
            self.bodies = Vec::new();
        }
    }

    /// Payload buffers kept for reuse (tests).
    #[cfg(test)]
    pub(in crate::caps) fn spare_bodies(&self) -> usize {
        self.bodies.len()
    }

    /// Give the read buffer back once everything in it is consumed.
    fn release_inbuf(&mut self) {
        if self.in_pos == self.in_end && !self.inbuf.is_empty() {
            give_back(std::mem::take(&mut self.inbuf));
            self.in_pos = 0;
            self.in_end = 0;
        }
    }

    /// Give the output buffer back once it is all written (a quiet
    /// connection holds none): kept as the thread's spare if it has none
    /// and it is not big, else freed.
    fn release_out(&mut self) {
        self.out_pos = 0;
        let mut out = std::mem::take(&mut self.out);
        if out.capacity() == 0 || out.capacity() > SPARE_OUT_MAX {
            return;
        }
        out.clear();
        spares(|s| {
            if s.out.capacity() == 0 {
                s.out = out;
            }
        });
    }

    /// Where this connection's region is mapped (address, bytes), while
    /// it is.
    #[cfg(test)]
    pub(in crate::caps) fn region_span(&self) -> Option<(usize, usize)> {
        match &self.shm {
            Mode::On(link) => Some(link.tx.region_span()),
            _ => None,
        }
    }

    /// Is the connection in shared memory (agreed, mapped or not)?
    #[cfg(test)]
    pub(in crate::caps) fn shm_agreed(&self) -> bool {
        !matches!(self.shm, Mode::Off)
    }

    /// Bytes of buffers this connection holds now (read and output
    /// buffers, the frame reader's partial frame).
    #[cfg(test)]
    pub(in crate::caps) fn buffer_bytes(&self) -> usize {
        self.inbuf.len()
            + self.out.capacity()
            + self.reader.capacity()
            + self.bodies.iter().map(Vec::capacity).sum::<usize>()
    }

    /// Take exactly `HELLO_LEN` bytes of hello from the socket, once
    /// they all came (what follows stays in the socket).
    pub(in crate::caps) fn take_hello(&mut self) -> Result<Option<[u8; HELLO_LEN]>, ReadEnd> {
        while self.hello_got < HELLO_LEN {
            let want = HELLO_LEN - self.hello_got;
            // SAFETY: `hello[hello_got..]` is writable for `want` bytes.
            let n = unsafe {
                libc::recv(
                    self.raw(),
                    self.hello[self.hello_got..].as_mut_ptr().cast(),
                    want,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                self.hello_got += n as usize;
                continue;
            }
            if n == 0 {
                return Err(ReadEnd::Eof);
            }
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::EAGAIN => return Ok(None),
                e => return Err(ReadEnd::Errno(e)),
            }
        }
        Ok(Some(self.hello))
    }

    /// Has the hello deadline passed without a complete hello?
    pub(in crate::caps) fn hello_overdue(&self, now: Instant) -> bool {
        self.hello_got < HELLO_LEN && now.duration_since(self.since) >= HELLO_DEADLINE
    }

    /// An inherited connection in a `fork()` child: forget the event loop
    /// registration (it is the parent's), close the child's copy of the
    /// socket, drop what was queued. Later writes fail (`EBADF`), so the
    /// usual shutdown paths run without touching the parent's socket.
    pub(in crate::caps) fn disown(&mut self) {
        self.token = None;
        self.fd = None;
        // The child's copy of the mapping goes; the parent's rings are
        // not touched.
        self.shm = Mode::Off;
        self.fds_in.clear();
        self.out_fd = None;
        self.out = Vec::new();
        self.out_pos = 0;
        self.bodies = Vec::new();
        self.in_pos = self.in_end;
        self.release_inbuf();
    }

    /// Stop watching and close the socket. What the peer sent and we did
    /// not read (up to 64 KiB) is read and discarded first: a socket
    /// closed with unread input resets the connection, and the peer could
    /// lose what we wrote last (a refusing hello, say).
    pub(in crate::caps) fn close(&mut self) {
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            // SAFETY: `sink` is writable for its length; a closed
            // descriptor (-1) just fails.
            let n = unsafe {
                libc::recv(
                    self.raw(),
                    sink.as_mut_ptr().cast(),
                    sink.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                break;
            }
        }
        self.dead = true;
        if let Some(t) = self.token.take() {
            evloop::unregister(t);
        }
        self.shm = Mode::Off;
        self.fds_in.clear();
        self.out_fd = None;
        self.fd = None;
        self.out = Vec::new();
        self.out_pos = 0;
        self.bodies = Vec::new();
        self.in_pos = self.in_end;
        self.release_inbuf();
    }
}
