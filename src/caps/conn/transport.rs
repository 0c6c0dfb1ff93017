//! The transport of one connection: framing and buffered, non-blocking
//! input and output over its socket. Everything above it (the service
//! side in `conn::service`, the v1 and v2 faces) sees frames, never
//! bytes: a transport that moves frames another way (a ring in shared
//! memory, negotiated in the hello) replaces the body of this type and
//! nothing else.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use super::{EV_IN, EV_OUT, HELLO_DEADLINE};
use crate::caps::errno::Errno;
use crate::caps::wire::{Frame, FrameReader, HELLO_LEN, Header, WireError};
use crate::cpu::evloop::{self, Token};

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// One connected socket: buffered input and output, its event loop
/// registration (v1) and the peer's hello as far as it came.
pub(in crate::caps) struct Transport {
    fd: Option<OwnedFd>,
    /// The cpu event loop's registration (v1; v2 polls).
    pub(in crate::caps) token: Option<Token>,
    /// Bytes read but not yet consumed: `inbuf[in_pos..in_end]`; taken
    /// at the first read after the hello.
    inbuf: Box<[u8]>,
    in_pos: usize,
    in_end: usize,
    /// The last read emptied the socket; wait for the next event.
    drained: bool,
    reader: FrameReader,
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
            out: Vec::new(),
            out_pos: 0,
            events: EV_IN,
            dead: false,
            max_body,
            hello: [0; HELLO_LEN],
            hello_got: 0,
            since: Instant::now(),
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

    /// Bytes queued and not yet written.
    pub(in crate::caps) fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Readiness `bits` (epoll's, or `EV_IN` after a `poll`): input may
    /// have come, so the next read tries the socket again; output is
    /// written when the socket takes it. An error: the connection failed.
    pub(in crate::caps) fn ready(&mut self, bits: u32) -> Result<(), Errno> {
        if bits & !EV_OUT != 0 {
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

    /// Read the socket again even if the last read emptied it (a paused
    /// connection resumed).
    pub(in crate::caps) fn rearm(&mut self) {
        self.drained = false;
        let ev = self.events | EV_IN;
        self.set_events(ev);
    }

    /// Stop asking for input events (back-pressure).
    pub(in crate::caps) fn pause(&mut self) {
        let ev = self.events & !EV_IN;
        self.set_events(ev);
    }

    /// Write as much queued output as the socket takes.
    pub(in crate::caps) fn flush(&mut self) -> Result<(), Errno> {
        while self.out_pos < self.out.len() {
            // SAFETY: the slice is valid; MSG_NOSIGNAL keeps SIGPIPE away.
            let n = unsafe {
                libc::send(
                    self.raw(),
                    self.out[self.out_pos..].as_ptr().cast(),
                    self.out.len() - self.out_pos,
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    Errno::EAGAIN => break,
                    e => return Err(e),
                }
            }
            self.out_pos += n as usize;
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        let want_out = self.queued() > 0;
        let events = (self.events & !EV_OUT) | if want_out { EV_OUT } else { 0 };
        self.set_events(events);
        Ok(())
    }

    /// Queue one frame.
    pub(in crate::caps) fn push_frame(&mut self, h: &Header, body: &[u8]) {
        self.out.extend_from_slice(&h.encode());
        self.out.extend_from_slice(body);
    }

    /// Queue raw bytes (a hello).
    pub(in crate::caps) fn push_bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// Read more bytes behind the unconsumed input: Ok(true) if some
    /// arrived, Ok(false) if none are available now. A short read means
    /// the socket is empty for now; the next readiness event clears
    /// `drained` (level-triggered epoll), which saves a `recv` that would
    /// only say `EAGAIN`.
    fn fill(&mut self) -> Result<bool, ReadEnd> {
        if self.drained {
            return Ok(false);
        }
        if self.inbuf.is_empty() {
            self.inbuf = vec![0u8; READ_CHUNK].into_boxed_slice();
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
        loop {
            // SAFETY: `inbuf[in_end..]` is writable for `room` bytes.
            let n = unsafe {
                libc::recv(
                    self.raw(),
                    self.inbuf[self.in_end..].as_mut_ptr().cast(),
                    room,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                self.in_end += n as usize;
                self.drained = (n as usize) < room;
                return Ok(true);
            }
            if n == 0 {
                return Err(ReadEnd::Eof);
            }
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::EAGAIN => {
                    self.drained = true;
                    return Ok(false);
                }
                e => return Err(ReadEnd::Errno(e)),
            }
        }
    }

    /// The next whole frame from the input, reading the socket as needed.
    pub(in crate::caps) fn next_frame(&mut self) -> Result<Option<Frame>, ReadEnd> {
        loop {
            if self.in_pos == self.in_end && !self.fill()? {
                return Ok(None);
            }
            let (n, frame) = self
                .reader
                .feed(&self.inbuf[self.in_pos..self.in_end], self.max_body)
                .map_err(ReadEnd::Protocol)?;
            self.in_pos += n;
            if frame.is_some() {
                return Ok(frame);
            }
        }
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
        self.out.clear();
        self.out_pos = 0;
        self.in_pos = 0;
        self.in_end = 0;
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
        self.fd = None;
        self.out.clear();
        self.out_pos = 0;
    }
}
