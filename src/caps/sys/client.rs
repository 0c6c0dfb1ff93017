//! A v2 client: finding and connecting to a service, its requests,
//! replies and dispose notices.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::names::matching_nodes;
use super::service::pollfd;
use super::table::{Kind, lock};
use super::{Got, MAX_INPROG, MAX_MSG, WAITSVC_POLL_MS, check_name};
use crate::abi::{CAPF_UFLAGS, CAPF_WAITSVC, CAPMS_REPLY, caps_cred};
use crate::caps::conn::{
    CANDIDATE_HELLO_MS, HELLO_TIMEOUT_MS, ReadEnd, Transport, client_dropped, client_transport,
    handshake, read_exact_timeout,
};
use crate::caps::cred::Cred;
use crate::caps::errno::Errno;
use crate::caps::idhash::IdMap;
use crate::caps::rendezvous;
use crate::caps::wire::{
    FrameKind, HEADER_LEN, HELLO_DISPOSES, Header, Hello, HelloKind, VERSION_SYS, WireError,
};
use crate::warn;

/// A v2 client's connection to its service.
pub(super) struct Client {
    pub(super) conn: Transport,
    /// The service's credentials (what a reply was "loaded" by).
    peer: Cred,
    next_id: u64,
    /// Put and not yet answered by a retrieved reply; true once its reply
    /// is in `replies`.
    outstanding: IdMap<u64, bool>,
    /// Replies received, not yet retrieved: (id, data, synthesized).
    replies: VecDeque<(u64, Vec<u8>, bool)>,
    /// The service takes coalesced disposes (the hellos agreed to
    /// `HELLO_DISPOSES`); else each reply read is disposed of at once.
    coalesce: bool,
    /// Ids of replies retrieved whose dispose is not sent yet, in the
    /// order they were retrieved. With `coalesce`, a dispose is owed only
    /// while the client still has other requests outstanding and no other
    /// thread sleeps on this or another client of the process (`get`
    /// sends them when one does); the disposes owed go with the next
    /// request, or before a call on this client finds nothing to take
    /// (before it sleeps or says `EAGAIN`), before any `caps_sys_*` call
    /// of the process sleeps, and at close. So the service never waits
    /// for them while the client waits for it.
    owed: Vec<u64>,
    pub(super) generation: i64,
    /// A reply arrived or the connection ended (see `Entry::settle`).
    pub(super) news: bool,
}

/// `caps_sys_client`: connect to the service matching `(name, uid, gid)`
/// (-1: any). With `CAPF_WAITSVC`, wait until one appears.
pub fn client(name: &[u8], uid: u32, gid: u32, flags: i32) -> Result<i32, Errno> {
    check_name(name)?;
    let flags = flags & CAPF_UFLAGS;
    // Connecting may take a while.
    lock().send_owed();
    let dir = rendezvous::sys_dir();
    let watch = if flags & CAPF_WAITSVC != 0 {
        rendezvous::open_sys_dir("caps_sys_client")?;
        Some(DirWatch::new(&dir)?)
    } else {
        None
    };
    let (fd, shm, generation, options) = loop {
        match connect_any(&dir, name, uid, gid, flags) {
            Err(Errno::ENOENT) if watch.is_some() => {}
            other => break other?,
        }
        if let Some(w) = &watch {
            w.wait(WAITSVC_POLL_MS)?;
        }
    };
    let peer = Cred::of_peer(fd.as_raw_fd()).unwrap_or_default();
    let conn = client_transport(fd, MAX_MSG as u32, shm, "caps_sys_client");
    let cli = Client {
        peer,
        conn,
        next_id: 1,
        outstanding: IdMap::default(),
        replies: VecDeque::new(),
        coalesce: options & HELLO_DISPOSES != 0,
        owed: Vec::new(),
        generation,
        news: false,
    };
    lock().insert(flags, Kind::Client(Box::new(cli)))
}

/// Try the matching services, newest first: the first live one answers
/// (accepts, or refuses with `EACCES`). `ENOENT` if none is live.
fn connect_any(
    dir: &Path,
    name: &[u8],
    uid: u32,
    gid: u32,
    flags: i32,
) -> Result<(OwnedFd, bool, i64, u32), Errno> {
    let hello = Hello {
        version: VERSION_SYS,
        kind: HelloKind::Client,
        max_msgsize: MAX_MSG as u32,
        status: flags as u32 | HELLO_DISPOSES,
    };
    let mut silent = None;
    let nodes = matching_nodes(dir, name, uid, gid);
    let last = nodes.len().saturating_sub(1);
    for (i, node) in nodes.into_iter().enumerate() {
        let owner = (node.uid, node.gid);
        // A short deadline while another candidate remains (a silent node
        // must not hide a live one); the last candidate gets the ordinary
        // one, so a busy but live service is not given up on after 1 s.
        let deadline = if i == last {
            HELLO_TIMEOUT_MS
        } else {
            CANDIDATE_HELLO_MS
        };
        match handshake(
            &node.path,
            &hello,
            owner,
            &pump_services,
            "caps_sys_client",
            name,
            deadline,
        ) {
            Ok((fd, shm, options)) => {
                // The server follows its hello with its generation.
                let mut b = [0u8; HEADER_LEN];
                match read_exact_timeout(fd.as_raw_fd(), &mut b, deadline) {
                    Err(Errno::ETIMEDOUT) => {
                        silent = Some(node.path);
                        continue;
                    }
                    r => r?,
                }
                let h = Header::decode(&b, 0).map_err(|_| Errno::EPROTO)?;
                if h.kind != FrameKind::Gen {
                    return Err(Errno::EPROTO);
                }
                return Ok((fd, shm, h.result as i64, options));
            }
            // A dead service's node, or one removed meanwhile.
            Err(Errno::ECONNREFUSED | Errno::ENOENT | Errno::ECONNRESET) => continue,
            // Accepts but does not answer: try the next one.
            Err(Errno::ETIMEDOUT) => {
                silent = Some(node.path);
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(p) = silent {
        warn!(
            "caps_sys_client",
            "service {}: {} accepted but sent no hello in time, and no other candidate answered",
            String::from_utf8_lossy(name),
            p.display()
        );
        return Err(Errno::ETIMEDOUT);
    }
    Err(Errno::ENOENT)
}

/// Let this process's services accept and answer hellos (called by a
/// connecting client, whose service may be one of them).
fn pump_services() {
    let mut t = lock();
    for e in t.entries.values_mut() {
        if let Kind::Service(s) = &mut e.kind {
            s.accept_due = true;
            e.pump(true);
            e.settle();
        }
    }
}

/// An inotify watch on the services directory: wakes a client waiting
/// for a service when a node is created or renamed into it.
struct DirWatch(OwnedFd);

impl DirWatch {
    fn new(dir: &Path) -> Result<DirWatch, Errno> {
        // SAFETY: plain inotify_init1 call.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
        // SAFETY: valid descriptor and path.
        let w = unsafe {
            libc::inotify_add_watch(
                fd.as_raw_fd(),
                c.as_ptr(),
                libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_ATTRIB,
            )
        };
        if w < 0 {
            return Err(Errno::last());
        }
        Ok(DirWatch(fd))
    }

    /// Sleep until the directory changes or `ms` pass; `EINTR` on a
    /// signal.
    fn wait(&self, ms: i32) -> Result<(), Errno> {
        let mut p = pollfd(self.0.as_raw_fd(), libc::POLLIN);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, ms) } < 0 {
            return Err(Errno::last());
        }
        let mut buf = [0u8; 4096];
        // SAFETY: drain the events into a local buffer.
        while unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        Ok(())
    }
}

impl Client {
    /// Read every frame available, write what is queued. Never blocks.
    pub(super) fn pump(&mut self, sockets: bool) {
        if self.conn.dead {
            return;
        }
        if sockets {
            self.conn.input_ready();
        } else {
            self.conn.input_ready_unless_ring();
        }
        loop {
            match self.conn.next_frame() {
                Ok(None) => break,
                Ok(Some((h, body))) => match h.kind {
                    FrameKind::Gen => self.generation = h.result as i64,
                    FrameKind::Reply
                        if self
                            .outstanding
                            .get_mut(&h.id)
                            .is_some_and(|replied| !std::mem::replace(replied, true)) =>
                    {
                        self.news = true;
                        self.replies.push_back((h.id, body, false));
                    }
                    _ => {
                        let why = WireError::Unexpected("a frame the client did not expect");
                        client_dropped("caps_sys_client", &ReadEnd::Protocol(why));
                        self.lost();
                        return;
                    }
                },
                Err(end) => {
                    client_dropped("caps_sys_client", &end);
                    self.lost();
                    return;
                }
            }
        }
        if self.conn.flush().is_err() {
            self.lost();
        }
    }

    /// The service is gone: every outstanding request without a reply
    /// gets an empty one, as the kernel auto-replied them.
    fn lost(&mut self) {
        self.news = true;
        self.owed.clear();
        self.conn.close();
        let mut ids: Vec<u64> = self
            .outstanding
            .iter_mut()
            .filter(|(_, replied)| !**replied)
            .map(|(id, replied)| {
                *replied = true;
                *id
            })
            .collect();
        ids.sort_unstable();
        for id in ids {
            self.replies.push_back((id, Vec::new(), true));
        }
    }

    pub(super) fn put(&mut self, data: &[u8]) -> Result<i64, Errno> {
        if self.conn.dead {
            return Err(Errno::ENOTCONN);
        }
        if self.outstanding.len() > MAX_INPROG {
            return Err(Errno::ENOBUFS);
        }
        let id = self.next_id;
        self.next_id += 1;
        // The disposes owed go first: the last one in the request's
        // `result`, any others in a `Disposes` frame before it.
        let last = if self.coalesce { self.owed.pop() } else { None };
        self.push_owed();
        let h = Header {
            capacity: data.len() as u32,
            result: last.unwrap_or(0),
            ..Header::new(FrameKind::Request, id, data.len() as u32)
        };
        self.conn.push_frame(&h, data);
        if self.conn.flush().is_err() {
            // The service is gone (a put does not read first: the send
            // tells).
            self.lost();
            return Err(Errno::ENOTCONN);
        }
        self.outstanding.insert(id, false);
        Ok(id as i64)
    }

    /// Retrieve the first reply received into `buf`. Its dispose is sent
    /// at once, or owed (see `owed`); `urgent`: another thread sleeps on
    /// this client, so nothing is owed.
    pub(super) fn take(
        &mut self,
        buf: &mut [u8],
        cred: Option<&mut caps_cred>,
        urgent: bool,
    ) -> Option<Got> {
        let (id, data, synth) = self.replies.front()?;
        let (id, size, synth) = (*id, data.len(), *synth);
        if let Some(out) = cred {
            self.peer.to_c(out);
        }
        let got = Got {
            size,
            id: id as i64,
            state: CAPMS_REPLY,
        };
        if size > buf.len() {
            return Some(got);
        }
        let data = self.replies.pop_front().map(|(_, data, _)| {
            buf[..size].copy_from_slice(&data);
            data
        });
        self.outstanding.remove(&id);
        if self.outstanding.is_empty() {
            // Quiet: nothing more is coming (and one request at a time
            // costs no list of spares).
            self.conn.quiet_bodies();
        } else if let Some(d) = data {
            self.conn.recycle(d);
        }
        if !synth && !self.conn.dead {
            self.owed.push(id);
            if !self.coalesce || urgent || self.outstanding.is_empty() {
                self.send_owed();
            }
        }
        Some(got)
    }

    /// Send the disposes owed, if any (see `owed`).
    pub(super) fn send_owed(&mut self) {
        if self.owed.is_empty() || self.conn.dead {
            return;
        }
        self.push_owed();
        if self.conn.flush().is_err() {
            self.lost();
        }
    }

    /// Queue the disposes owed: one `Dispose` frame each to a service
    /// that did not agree to coalescing, else one frame for all of them.
    pub(super) fn push_owed(&mut self) {
        match self.owed[..] {
            [] => {}
            [id] => self
                .conn
                .push_frame(&Header::new(FrameKind::Dispose, id, 0), &[]),
            _ if !self.coalesce => {
                for &id in &self.owed {
                    let h = Header::new(FrameKind::Dispose, id, 0);
                    self.conn.push_frame(&h, &[]);
                }
            }
            _ => {
                // (At most `MAX_INPROG + 1` are ever owed: that many can
                // be outstanding.)
                let mut ids = [0u8; 8 * (MAX_INPROG + 1)];
                for some in self.owed.chunks(MAX_INPROG + 1) {
                    for (d, id) in ids.chunks_exact_mut(8).zip(some) {
                        d.copy_from_slice(&id.to_le_bytes());
                    }
                    let n = 8 * some.len();
                    let h = Header::new(FrameKind::Disposes, 0, n as u32);
                    self.conn.push_frame(&h, &ids[..n]);
                }
            }
        }
        self.owed.clear();
    }
}
