//! The CAPS wire protocol (see `docs/wire-protocol.md`), version 1 for the
//! v1 ports and 2 for the `caps_sys_*` calls: a hello in each direction,
//! then frames with a fixed little-endian header. No pointer and
//! no host structure image ever crosses the socket.

/// "CAPS" in little-endian byte order.
pub const MAGIC: u32 = u32::from_le_bytes(*b"CAPS");
/// Protocol version of the v1 port API (`caps_service`/`caps_client`).
pub const VERSION: u16 = 1;
/// Protocol version of the v2 `caps_sys_*` API: same hello and frame
/// header, plus the `Dispose`, `Gen` and `Disposes` frames.
pub const VERSION_SYS: u16 = 2;
/// A bit of a hello's `status`: the client offers (client hello) and the
/// server accepts (server hello, with status 0 otherwise) to carry the
/// connection's frames in shared memory (`docs/wire-protocol.md`).
pub const HELLO_SHM: u32 = 0x4000_0000;
/// A bit of a hello's `status`, with [`HELLO_SHM`]: the client offers
/// (and the server, answering, agrees) that a quiet connection's region
/// is given up altogether, by a detach record from the service and the
/// client's detached record (`docs/wire-protocol.md`, "Quiet
/// connections").
pub const HELLO_DETACH: u32 = 0x2000_0000;
/// A bit of a v2 hello's `status`: the client offers (client hello) and
/// the server agrees (server hello) that the client sends its dispose
/// notices coalesced: several in one `Disposes` frame, or one in the
/// `result` field of its next request, instead of a `Dispose` frame per
/// reply read (`docs/wire-protocol.md`, "Coalesced disposes").
pub const HELLO_DISPOSES: u32 = 0x1000_0000;
/// The bits of a hello's `status` a client may offer options in: a server
/// answers an offered option by setting its bit, which is then no part of
/// the errno (those are below `0x1_0000`).
pub const HELLO_OPTIONS: u32 = 0xFFFF_0000;
/// Bytes in a hello.
pub const HELLO_LEN: usize = 16;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 48;
/// Largest whole message (`struct lwkt_msg` plus payload): `CAPMSG_MAXSIZE`.
pub const MAX_MSGSIZE: usize = crate::abi::CAPMSG_MAXSIZE as usize;

/// Who sends a hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum HelloKind {
    Client = 1,
    Server = 2,
}

/// The first 16 bytes in each direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// `VERSION` or `VERSION_SYS`.
    pub version: u16,
    pub kind: HelloKind,
    /// Largest message the sender accepts (`CAPMSG_MAXSIZE`).
    pub max_msgsize: u32,
    /// Server: 0 = accepted, else the errno the client reports (`EACCES`).
    /// v2 client: the access flags it asks for (`CAPF_USER|GROUP|WORLD`);
    /// v1 client: 0.
    pub status: u32,
}

/// Why bytes from a peer were rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    BadMagic(u32),
    BadVersion(u16),
    BadKind(u16),
    /// A header field is outside its documented range.
    BadField(&'static str, u64),
    /// The payload is larger than the receiver's limit.
    TooLarge(u64),
    /// A well-formed frame the receiver's state does not allow (what).
    Unexpected(&'static str),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::BadMagic(m) => write!(f, "bad magic {m:#010x}"),
            WireError::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            WireError::BadKind(k) => write!(f, "unknown frame kind {k}"),
            WireError::BadField(name, v) => write!(f, "bad {name} {v}"),
            WireError::TooLarge(n) => write!(f, "payload of {n} bytes exceeds the limit"),
            WireError::Unexpected(what) => write!(f, "{what}"),
        }
    }
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..8].copy_from_slice(&(self.kind as u16).to_le_bytes());
        b[8..12].copy_from_slice(&self.max_msgsize.to_le_bytes());
        b[12..16].copy_from_slice(&self.status.to_le_bytes());
        b
    }

    /// Parse a hello; `expect` is the kind the peer must send, `version`
    /// the protocol it must speak.
    pub fn decode(
        b: &[u8; HELLO_LEN],
        expect: HelloKind,
        version: u16,
    ) -> Result<Hello, WireError> {
        let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
        if magic != MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        let got = u16::from_le_bytes(b[4..6].try_into().unwrap());
        if got != version {
            return Err(WireError::BadVersion(got));
        }
        let kind = u16::from_le_bytes(b[6..8].try_into().unwrap());
        if kind != expect as u16 {
            return Err(WireError::BadKind(kind));
        }
        let max_msgsize = u32::from_le_bytes(b[8..12].try_into().unwrap());
        if (max_msgsize as usize) < HEADER_LEN {
            return Err(WireError::BadField("max_msgsize", max_msgsize.into()));
        }
        Ok(Hello {
            version,
            kind: expect,
            max_msgsize,
            status: u32::from_le_bytes(b[12..16].try_into().unwrap()),
        })
    }
}

/// Request (client → server) or reply (server → client); v2 only:
/// dispose notice (client → server: the reply `id` was read),
/// generation (server → client: `result` is the service's generation)
/// and, when the hellos agreed to [`HELLO_DISPOSES`], a list of dispose
/// notices (client → server: the payload is the ids, 8 bytes each).
/// Both versions: the library-internal `Ping` and `Stat` (client →
/// server, answered by the server's library with a frame of the same
/// kind and id; never shown to an application).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum FrameKind {
    Request = 1,
    Reply = 2,
    Dispose = 3,
    Gen = 4,
    Ping = 5,
    Stat = 6,
    Disposes = 7,
}

/// A frame header. The payload (`body_len` bytes: the message bytes after
/// `struct lwkt_msg`) follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: FrameKind,
    pub body_len: u32,
    /// Chosen by the client, unique among its outstanding requests; echoed
    /// by the reply.
    pub id: u64,
    /// Request: payload capacity of the requester's buffer (`ms_maxsize`
    /// less `sizeof(struct lwkt_msg)`), at least `body_len`. Reply: 0.
    pub capacity: u32,
    pub cmd: i32,
    pub error: i32,
    /// The 8 bytes of the message's `u` union.
    pub result: u64,
    pub pad: [i32; 2],
}

impl Header {
    /// A header of `kind` for frame `id` with `body_len` bytes of payload,
    /// every other field 0 (set the face's own with `..Header::new(..)`).
    pub fn new(kind: FrameKind, id: u64, body_len: u32) -> Header {
        Header {
            kind,
            body_len,
            id,
            capacity: 0,
            cmd: 0,
            error: 0,
            result: 0,
            pad: [0, 0],
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&(self.kind as u16).to_le_bytes());
        // 2..4 reserved, zero
        b[4..8].copy_from_slice(&self.body_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..20].copy_from_slice(&self.capacity.to_le_bytes());
        b[20..24].copy_from_slice(&self.cmd.to_le_bytes());
        b[24..28].copy_from_slice(&self.error.to_le_bytes());
        // 28..32 reserved, zero
        b[32..40].copy_from_slice(&self.result.to_le_bytes());
        b[40..44].copy_from_slice(&self.pad[0].to_le_bytes());
        b[44..48].copy_from_slice(&self.pad[1].to_le_bytes());
        b
    }

    /// Parse and validate a header. `max_body` is the receiver's payload
    /// limit.
    pub fn decode(b: &[u8; HEADER_LEN], max_body: u32) -> Result<Header, WireError> {
        let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().unwrap());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let kind = match u16_at(0) {
            1 => FrameKind::Request,
            2 => FrameKind::Reply,
            3 => FrameKind::Dispose,
            4 => FrameKind::Gen,
            5 => FrameKind::Ping,
            6 => FrameKind::Stat,
            7 => FrameKind::Disposes,
            k => return Err(WireError::BadKind(k)),
        };
        if u16_at(2) != 0 {
            return Err(WireError::BadField("reserved", u16_at(2).into()));
        }
        if u32_at(28) != 0 {
            return Err(WireError::BadField("reserved", u32_at(28).into()));
        }
        let body_len = u32_at(4);
        if body_len > max_body {
            return Err(WireError::TooLarge(body_len.into()));
        }
        let capacity = u32_at(16);
        match kind {
            FrameKind::Request if capacity < body_len || capacity > max_body => {
                return Err(WireError::BadField("capacity", capacity.into()));
            }
            FrameKind::Reply
            | FrameKind::Dispose
            | FrameKind::Gen
            | FrameKind::Ping
            | FrameKind::Stat
            | FrameKind::Disposes
                if capacity != 0 =>
            {
                return Err(WireError::BadField("capacity", capacity.into()));
            }
            FrameKind::Dispose | FrameKind::Gen | FrameKind::Ping if body_len != 0 => {
                return Err(WireError::BadField("body_len", body_len.into()));
            }
            // One id or more, 8 bytes each.
            FrameKind::Disposes if body_len == 0 || !body_len.is_multiple_of(8) => {
                return Err(WireError::BadField("body_len", body_len.into()));
            }
            _ => {}
        }
        Ok(Header {
            kind,
            body_len,
            id: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            capacity,
            cmd: u32_at(20) as i32,
            error: u32_at(24) as i32,
            result: u64::from_le_bytes(b[32..40].try_into().unwrap()),
            pad: [u32_at(40) as i32, u32_at(44) as i32],
        })
    }
}

/// Version of the `Stat` answer's payload.
pub const STATS_VERSION: u16 = 1;
/// Bytes before the counters in a `Stat` answer: version (u16), count
/// of counters (u16), reserved (u32, 0).
pub const STATS_HEAD: usize = 8;

/// Names of the counters of a `Stat` answer, in their order on the wire
/// (each a little-endian u64 after the 8-byte head). A later version
/// appends; a reader takes the ones it knows and skips the rest.
pub const STAT_NAMES: [&str; 16] = [
    "uptime_ms",
    "connections_now",
    "connections_total",
    "requests",
    "replies",
    "bytes_in",
    "bytes_out",
    "protocol_errors",
    "dropped_hello_deadline",
    "dropped_uid_limit",
    "held_memory_budget",
    "dropped_bad_frame",
    "deepest_queue_bytes",
    "refused",
    "pings",
    "stats",
];

/// The counters a service's library keeps (see `docs/wire-protocol.md`,
/// "Ping and Stat"), as a `Stat` answer carries them: `STAT_NAMES[i]` is
/// `values[i]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub values: [u64; STAT_NAMES.len()],
}

impl Counters {
    /// The counter named `name` (0 for a name not in `STAT_NAMES`).
    pub fn get(&self, name: &str) -> u64 {
        STAT_NAMES
            .iter()
            .position(|n| *n == name)
            .map_or(0, |i| self.values[i])
    }

    /// The payload of a `Stat` answer.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(STATS_HEAD + 8 * self.values.len());
        b.extend_from_slice(&STATS_VERSION.to_le_bytes());
        b.extend_from_slice(&(self.values.len() as u16).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for v in self.values {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parse a `Stat` answer's payload: counters beyond those we know are
    /// skipped; a payload that is shorter than its count says, or has
    /// fewer counters than version 1, is rejected.
    pub fn decode(b: &[u8]) -> Result<Counters, WireError> {
        if b.len() < STATS_HEAD {
            return Err(WireError::BadField("stat payload length", b.len() as u64));
        }
        let version = u16::from_le_bytes([b[0], b[1]]);
        if version < STATS_VERSION {
            return Err(WireError::BadVersion(version));
        }
        let count = u16::from_le_bytes([b[2], b[3]]) as usize;
        if count < STAT_NAMES.len() || b.len() != STATS_HEAD + 8 * count {
            return Err(WireError::BadField("stat counter count", count as u64));
        }
        let mut c = Counters::default();
        for (i, v) in c.values.iter_mut().enumerate() {
            let at = STATS_HEAD + 8 * i;
            *v = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        }
        Ok(c)
    }
}

/// A whole frame: its header and payload.
pub type Frame = (Header, Vec<u8>);

/// What [`FrameReader::feed_any`] completed.
pub enum Fed {
    Frame(Frame),
    /// A transport record header (kind `0x8000` and up), unchecked.
    Control([u8; HEADER_LEN]),
}

/// An empty buffer with room for a body of `len` bytes: the last of
/// `spares` (buffers of consumed frames kept by their connection) when
/// there is one and the body is not empty, else a new one of exactly
/// `len` bytes (none allocated for an empty body).
pub fn spare_body(spares: &mut Vec<Vec<u8>>, len: usize) -> Vec<u8> {
    if len == 0 {
        return Vec::new();
    }
    match spares.pop() {
        Some(mut b) => {
            b.clear();
            b.reserve_exact(len);
            b
        }
        None => Vec::with_capacity(len),
    }
}

/// Incremental frame reader: feed it bytes as they arrive, take whole
/// frames out. A header is collected in a fixed array; nothing is
/// allocated for a frame before its header has been validated, so a peer
/// cannot make us allocate more than the limit. The body goes to a buffer
/// of exactly its length, which the completed frame takes: one allocation
/// per frame with a payload, none for an empty one; or, fed with
/// [`FrameReader::feed_pooled`], to a spare buffer of the caller's.
pub struct FrameReader {
    header: Option<Header>,
    head: [u8; HEADER_LEN],
    head_len: usize,
    buf: Vec<u8>,
}

impl Default for FrameReader {
    fn default() -> FrameReader {
        FrameReader {
            header: None,
            head: [0; HEADER_LEN],
            head_len: 0,
            buf: Vec::new(),
        }
    }
}

impl FrameReader {
    /// How many bytes the reader wants next (it never asks for more than
    /// the rest of the current header or body).
    pub fn want(&self) -> usize {
        match &self.header {
            None => HEADER_LEN - self.head_len,
            Some(h) => h.body_len as usize - self.buf.len(),
        }
    }

    /// Consume bytes from `input`; returns how many were used and, when a
    /// frame completed, the frame.
    pub fn feed(
        &mut self,
        input: &[u8],
        max_body: u32,
    ) -> Result<(usize, Option<Frame>), WireError> {
        match self.feed_any(input, max_body, false)? {
            (n, Some(Fed::Frame(f))) => Ok((n, Some(f))),
            (n, _) => Ok((n, None)),
        }
    }

    /// [`FrameReader::feed`], and with `control` a header whose kind has
    /// the high bit set (`0x8000` and up: the shared-memory transport's
    /// records) is returned raw, unchecked, without a payload, for the
    /// transport to check; without `control` it is a bad kind.
    pub fn feed_any(
        &mut self,
        input: &[u8],
        max_body: u32,
        control: bool,
    ) -> Result<(usize, Option<Fed>), WireError> {
        self.feed_pooled(input, max_body, control, &mut Vec::new())
    }

    /// [`FrameReader::feed_any`], taking a frame's body buffer from
    /// `spares` (the last one, cleared; grown if it is too small) when
    /// there is one and the frame has a payload.
    pub fn feed_pooled(
        &mut self,
        input: &[u8],
        max_body: u32,
        control: bool,
        spares: &mut Vec<Vec<u8>>,
    ) -> Result<(usize, Option<Fed>), WireError> {
        let n = input.len().min(self.want());
        if self.header.is_none() {
            self.head[self.head_len..self.head_len + n].copy_from_slice(&input[..n]);
            self.head_len += n;
            if self.head_len < HEADER_LEN {
                return Ok((n, None));
            }
            self.head_len = 0;
            let raw = self.head;
            if control && raw[1] & 0x80 != 0 {
                return Ok((n, Some(Fed::Control(raw))));
            }
            let h = Header::decode(&raw, max_body)?;
            // The frame takes this buffer: a spare, or exactly the body's
            // bytes.
            let len = h.body_len as usize;
            self.buf = spare_body(spares, len);
            self.header = Some(h);
        } else {
            self.buf.extend_from_slice(&input[..n]);
        }
        match self.header {
            Some(h) if self.buf.len() == h.body_len as usize => {
                self.header = None;
                Ok((n, Some(Fed::Frame((h, std::mem::take(&mut self.buf))))))
            }
            _ => Ok((n, None)),
        }
    }

    /// Bytes the reader holds for a partial frame (its capacity).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// True when no partial frame is buffered.
    pub fn is_idle(&self) -> bool {
        self.header.is_none() && self.head_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: FrameKind, body_len: u32) -> Header {
        Header {
            kind,
            body_len,
            id: 0x0102_0304_0506_0708,
            capacity: if kind == FrameKind::Request {
                body_len + 10
            } else {
                0
            },
            cmd: -5,
            error: 23,
            result: u64::MAX - 1,
            pad: [i32::MIN, 7],
        }
    }

    #[test]
    fn hello_round_trip_and_rejections() {
        let h = Hello {
            version: VERSION,
            kind: HelloKind::Server,
            max_msgsize: MAX_MSGSIZE as u32,
            status: 13,
        };
        let b = h.encode();
        assert_eq!(&b[0..4], b"CAPS");
        assert_eq!(Hello::decode(&b, HelloKind::Server, VERSION), Ok(h));
        assert_eq!(
            Hello::decode(&b, HelloKind::Client, VERSION),
            Err(WireError::BadKind(2))
        );
        let mut bad = b;
        bad[4] = 9;
        assert_eq!(
            Hello::decode(&bad, HelloKind::Server, VERSION),
            Err(WireError::BadVersion(9))
        );
        bad = b;
        bad[0] = b'X';
        assert!(matches!(
            Hello::decode(&bad, HelloKind::Server, VERSION),
            Err(WireError::BadMagic(_))
        ));
    }

    #[test]
    fn header_is_little_endian_and_round_trips() {
        let h = header(FrameKind::Request, 300);
        let b = h.encode();
        assert_eq!(&b[0..2], &[1, 0]);
        assert_eq!(&b[4..8], &300u32.to_le_bytes());
        assert_eq!(&b[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(Header::decode(&b, 1000), Ok(h));
        let r = header(FrameKind::Reply, 0);
        assert_eq!(Header::decode(&r.encode(), 1000), Ok(r));
    }

    #[test]
    fn header_limits() {
        let b = header(FrameKind::Request, 2000).encode();
        assert_eq!(Header::decode(&b, 1000), Err(WireError::TooLarge(2000)));
        let mut h = header(FrameKind::Request, 100);
        h.capacity = 99;
        assert!(matches!(
            Header::decode(&h.encode(), 1000),
            Err(WireError::BadField("capacity", 99))
        ));
        h.capacity = 5000;
        assert!(Header::decode(&h.encode(), 1000).is_err());
        let mut r = header(FrameKind::Reply, 10).encode();
        r[16] = 1;
        assert!(Header::decode(&r, 1000).is_err());
        let mut k = header(FrameKind::Reply, 10).encode();
        k[0] = 9;
        assert_eq!(Header::decode(&k, 1000), Err(WireError::BadKind(9)));
        // v2 notices carry no payload and no capacity
        let mut g = header(FrameKind::Reply, 0);
        g.kind = FrameKind::Gen;
        assert_eq!(Header::decode(&g.encode(), 1000), Ok(g));
        g.kind = FrameKind::Dispose;
        assert_eq!(Header::decode(&g.encode(), 1000), Ok(g));
        g.body_len = 1;
        assert!(Header::decode(&g.encode(), 1000).is_err());
        // A list of dispose ids: 8 bytes each, at least one, no capacity.
        let mut d = Header::new(FrameKind::Disposes, 0, 24);
        assert_eq!(Header::decode(&d.encode(), 1000), Ok(d));
        for bad in [0, 4, 20] {
            d.body_len = bad;
            assert_eq!(
                Header::decode(&d.encode(), 1000),
                Err(WireError::BadField("body_len", bad.into()))
            );
        }
        d.body_len = 8;
        d.capacity = 8;
        assert!(Header::decode(&d.encode(), 1000).is_err());
        assert_eq!(
            Hello::decode(
                &Hello {
                    version: VERSION_SYS,
                    kind: HelloKind::Client,
                    max_msgsize: 100,
                    status: 7
                }
                .encode(),
                HelloKind::Client,
                VERSION
            ),
            Err(WireError::BadVersion(VERSION_SYS))
        );
        let mut res = header(FrameKind::Reply, 10).encode();
        res[30] = 1;
        assert!(Header::decode(&res, 1000).is_err());
    }

    #[test]
    fn reader_reassembles_byte_by_byte_and_in_bulk() {
        let mut stream = Vec::new();
        let bodies: Vec<Vec<u8>> = (0..5u32)
            .map(|i| (0..i * 37).map(|x| x as u8).collect())
            .collect();
        for (i, body) in bodies.iter().enumerate() {
            let mut h = header(FrameKind::Request, body.len() as u32);
            h.id = i as u64;
            stream.extend_from_slice(&h.encode());
            stream.extend_from_slice(body);
        }
        for chunk in [1usize, 7, 48, 1000] {
            let mut r = FrameReader::default();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let (n, frame) = r.feed(&rest[..chunk.min(rest.len())], 10_000).unwrap();
                rest = &rest[n..];
                if let Some((h, body)) = frame {
                    got.push((h.id, body));
                }
            }
            assert!(r.is_idle());
            assert_eq!(got.len(), 5, "chunk {chunk}");
            for (i, (id, body)) in got.into_iter().enumerate() {
                assert_eq!(id, i as u64);
                assert_eq!(body, bodies[i]);
                // The body's buffer was allocated once, at its length (a
                // header collected in the same buffer left it 48 bytes
                // long, to be grown again for a body: two allocations).
                assert_eq!(body.capacity(), bodies[i].len(), "chunk {chunk}");
            }
        }
    }

    #[test]
    fn ping_and_stat_frames_and_the_stat_payload() {
        let p = Header::new(FrameKind::Ping, 7, 0);
        assert_eq!(&p.encode()[0..2], &[5, 0]);
        assert_eq!(Header::decode(&p.encode(), 1000), Ok(p));
        let mut bad = p;
        bad.body_len = 1;
        assert!(Header::decode(&bad.encode(), 1000).is_err());
        let s = Header::new(FrameKind::Stat, 8, 136);
        assert_eq!(Header::decode(&s.encode(), 1000), Ok(s));
        let mut c = Counters::default();
        for (i, v) in c.values.iter_mut().enumerate() {
            *v = (i as u64) << 40 | 3;
        }
        let b = c.encode();
        assert_eq!(b.len(), STATS_HEAD + 8 * STAT_NAMES.len());
        assert_eq!(&b[0..4], &[1, 0, STAT_NAMES.len() as u8, 0]);
        assert_eq!(Counters::decode(&b), Ok(c));
        assert_eq!(c.get("requests"), 3 << 40 | 3);
        // a later version's extra counter is skipped
        let mut longer = b.clone();
        longer[2] += 1;
        longer.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(Counters::decode(&longer), Ok(c));
        assert!(Counters::decode(&b[..b.len() - 1]).is_err());
        assert!(Counters::decode(&b[..4]).is_err());
    }

    #[test]
    fn reader_rejects_oversized_before_allocating() {
        let mut r = FrameReader::default();
        let b = header(FrameKind::Request, 70_000).encode();
        assert_eq!(r.feed(&b, 66_480), Err(WireError::TooLarge(70_000)));
    }
}
