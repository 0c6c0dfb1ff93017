//! A v2 service: its queue of requests and dispose notices, the
//! requests it holds, replies and generations. Connections, hellos and
//! limits are the connection layer's (`caps::conn`).

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::AsRawFd;

use super::names::{key, matching_nodes, node_name};
use super::table::{Kind, lock};
use super::watch::Watch;
use super::{ACCEPT_EVERY, ACCEPT_EVERY_MAX, Got, MAX_AT_SERVER, MAX_MSG, check_name};
use crate::abi::{CAPF_EXCL, CAPF_UFLAGS, CAPMS_DISPOSE, CAPMS_REQUEST, caps_cred};
use crate::caps::conn::TURN;
use crate::caps::conn::{self, Admission, ReadEnd, set_nonblocking};
use crate::caps::cred::{Cred, SysAccess};
use crate::caps::errno::Errno;
use crate::caps::idhash::IdMap;
use crate::caps::rendezvous::{self, Listener};
use crate::caps::wire::{FrameKind, HELLO_DISPOSES, Header, VERSION_SYS, WireError};
use crate::warn;

/// A message waiting at a service to be retrieved.
enum Queued {
    Request {
        sid: i64,
        conn: u64,
        client_id: u64,
        data: Vec<u8>,
    },
    /// The client has read the reply to `sid`, or went away.
    Dispose { sid: i64, conn: u64 },
}

/// A request the server retrieved and has not replied to.
struct Held {
    /// `None` once the client went away (its dispose notice is queued).
    conn: Option<u64>,
    client_id: u64,
}

/// A v2 service's side of one client connection.
pub(super) struct Connection {
    pub(super) link: conn::Connection,
    /// Replies sent, by client id, waiting for the client's dispose.
    replied: IdMap<u64, i64>,
    /// Requests of this connection at the server in any state.
    inflight: usize,
    /// Bytes of its requests queued, not yet taken.
    pub(super) queued_bytes: usize,
    /// What its socket is watched for (`watch.rs`).
    pub(super) interest: u32,
    /// Times a pump read it (tests).
    #[cfg(test)]
    pub(super) visits: u64,
}

pub(super) struct Service {
    /// Admission, budget and log lines (the connection layer's).
    pub(super) core: conn::Service,
    pub(super) listener: Listener,
    /// The epoll set and the connections to read (`watch.rs`).
    pub(super) w: Watch,
    access: SysAccess,
    pub(super) conns: BTreeMap<u64, Connection>,
    next_conn: u64,
    queue: VecDeque<Queued>,
    held: IdMap<i64, Held>,
    next_sid: i64,
    generation: i64,
    /// Creds of connections that went away while notices about them are
    /// still queued.
    gone: IdMap<u64, Cred>,
    /// Something was queued or a connection came since other waiters last
    /// looked (see `Entry::settle`).
    pub(super) news: bool,
    /// The listener may have a connection pending: accept at the next
    /// read. Set by an event of the listener (it is in the epoll set),
    /// or by a client of this process that connects. The events are
    /// taken by every read while no ring is awake, and by a read after a
    /// wait's poll saw them; while a ring is awake, a read without a poll
    /// takes them every `accept_every` reads only, so that a service whose
    /// waits never poll (its rings always have something) still takes new
    /// clients and reads the sockets: that interval starts at
    /// `ACCEPT_EVERY`, doubles after each look that found nothing, up to
    /// `ACCEPT_EVERY_MAX`, and is reset by a look that found an event.
    pub(super) accept_due: bool,
    accept_skipped: u32,
    accept_every: u32,
    /// `accept` looks made (tests).
    #[cfg(test)]
    pub(super) accept_looks: u64,
    /// When the quiet sweep is due (`guard.rs`): set while a connection's
    /// rings are awake.
    pub(super) quiet_at: Option<std::time::Instant>,
}

/// `caps_sys_service`: register service `(name, uid, gid)`.
pub fn service(name: &[u8], uid: u32, gid: u32, flags: i32) -> Result<i32, Errno> {
    check_name(name)?;
    let flags = flags & CAPF_UFLAGS;
    let me = Cred::of_self();
    if me.uid != 0 {
        if uid != u32::MAX && uid != me.uid {
            return Err(Errno::EPERM);
        }
        if gid != u32::MAX && gid != me.gid && !me.groups.contains(&gid) {
            return Err(Errno::EPERM);
        }
    }
    let dir = rendezvous::open_sys_dir("caps_sys_service")?;
    let node = node_name(name, key(uid), key(gid));
    let path = dir.path.join(&node);
    rendezvous::check_path_len(&path)?;
    let excl = flags & CAPF_EXCL != 0;
    let sys_path = dir.path.clone();
    let listener = rendezvous::listen_in("caps_sys_service", dir, node.as_bytes(), 0o666, || {
        excl && matching_nodes(&sys_path, name, uid, gid)
            .iter()
            .any(|n| rendezvous::is_live(&n.path))
    })?;
    set_nonblocking(listener.fd.as_raw_fd());
    let w = Watch::new(listener.fd.as_raw_fd())?;
    let mut core = conn::Service::new(
        "caps_sys_service",
        listener.path.display().to_string(),
        me.uid,
        VERSION_SYS,
        MAX_MSG as u32,
        MAX_MSG as u32,
    );
    core.options = HELLO_DISPOSES;
    let svc = Service {
        core,
        listener,
        w,
        access: SysAccess {
            uid: key(uid),
            gid: key(gid),
            flags,
        },
        conns: BTreeMap::new(),
        next_conn: 1,
        queue: VecDeque::new(),
        held: IdMap::default(),
        next_sid: 1,
        generation: 0,
        gone: IdMap::default(),
        news: false,
        accept_due: true,
        accept_skipped: 0,
        accept_every: ACCEPT_EVERY,
        #[cfg(test)]
        accept_looks: 0,
        quiet_at: None,
    };
    let r = lock().insert(flags, Kind::Service(Box::new(svc)));
    if let Err(e) = &r {
        warn!("caps_sys_service", "{}: {}", path.display(), *e);
    }
    r
}

impl Service {
    /// Accept new connections, read the frames available (at most
    /// [`TURN`] from each connection) from the connections that may have
    /// some (`watch.rs`), write what is queued. Never blocks. `sockets`:
    /// take the epoll set's events first (a wait's poll saw it readable,
    /// or the call reads everything); also done when no ring is awake
    /// (then only a socket can have brought something), and otherwise
    /// every `accept_every` reads (see `accept_due`).
    pub(super) fn pump(&mut self, sockets: bool) {
        if sockets || self.w.rings.is_empty() || self.accept_skipped >= self.accept_every {
            let found = self.harvest();
            if !sockets && !self.w.rings.is_empty() {
                self.accept_skipped = 0;
                self.accept_every = if found {
                    ACCEPT_EVERY
                } else {
                    self.accept_every.saturating_mul(2).min(ACCEPT_EVERY_MAX)
                };
            }
        } else {
            self.accept_skipped += 1;
        }
        if std::mem::take(&mut self.accept_due) {
            self.accept_all();
        }
        for i in 0..self.start_walk() {
            let k = self.walk(i);
            self.pump_conn(k);
            self.track(k);
        }
        self.hello_sweep();
    }

    /// Accept the pending connections.
    fn accept_all(&mut self) {
        #[cfg(test)]
        {
            self.accept_looks += 1;
        }
        while let Some(link) = self.core.accept(self.listener.fd.as_raw_fd()) {
            let k = self.next_conn;
            self.next_conn += 1;
            self.news = true;
            let fd = link.tx.raw();
            self.conns.insert(
                k,
                Connection {
                    link,
                    replied: IdMap::default(),
                    inflight: 0,
                    queued_bytes: 0,
                    interest: libc::EPOLLIN as u32,
                    #[cfg(test)]
                    visits: 0,
                },
            );
            if let Err(e) = self.watch_conn(k, fd) {
                warn!("caps_sys_service", "cannot watch a connection: {}", e);
                self.remove_conn(k, None);
            }
        }
    }

    fn pump_conn(&mut self, k: u64) {
        let Some(c) = self.conns.get_mut(&k) else {
            return;
        };
        #[cfg(test)]
        {
            c.visits += 1;
        }
        let (access, generation) = (&self.access, self.generation);
        let admission = self.core.admit(
            &mut c.link,
            |h, peer| access.admits(peer, h.status as i32),
            |tx| tx.push_frame(&gen_frame(generation), &[]),
        );
        match admission {
            Admission::Waiting => return,
            Admission::Closed => {
                self.remove_conn(k, None);
                return;
            }
            Admission::Admitted => {}
        }
        // At most TURN frames, then the others' turn: what is left is read
        // at the next pump, which comes once the queue is taken (a get
        // finds what this one queued before it polls). A lone connection
        // reads on (as a v1 service's does when no other has input): what
        // it can send before a reply is bounded (its requests in flight,
        // its budget), and each pump costs a walk of the connections, the
        // hello sweep and a flush.
        let alone = self.conns.len() == 1;
        let mut taken = 0;
        loop {
            if taken == TURN && !alone {
                self.again(k);
                break;
            }
            taken += 1;
            let Some(c) = self.conns.get_mut(&k) else {
                return;
            };
            if !self.core.may_read(&c.link) {
                // Over budget: its requests wait in the socket.
                break;
            }
            match c.link.next_frame(&mut self.core) {
                Ok(None) => {
                    // Stopped at its bound of pings and stats: the rest
                    // (buffered, maybe) at the next pump, alone or not.
                    if c.link.turn_cut() {
                        self.again(k);
                    }
                    break;
                }
                Ok(Some((h, body))) => {
                    if let Err(why) = self.frame(k, &h, body) {
                        self.conn_gone(k, Some(&ReadEnd::Protocol(WireError::Unexpected(why))));
                        return;
                    }
                }
                Err(end) => {
                    self.conn_gone(k, Some(&end));
                    return;
                }
            }
        }
        if let Some(c) = self.conns.get_mut(&k)
            && c.link.tx.flush().is_err()
        {
            self.conn_gone(k, None);
        }
        self.account(k);
    }

    /// One frame from connection `k`.
    fn frame(&mut self, k: u64, h: &Header, body: Vec<u8>) -> Result<(), &'static str> {
        let c = self.conns.get_mut(&k).ok_or("gone")?;
        let coalesce = c.link.options & HELLO_DISPOSES != 0;
        match h.kind {
            FrameKind::Request => {
                // A dispose the request carries comes first (it frees
                // its place in the count below).
                match h.result {
                    0 => {}
                    _ if !coalesce => return Err("a request with a result"),
                    id => self.dispose(k, id)?,
                }
                let c = self.conns.get_mut(&k).ok_or("gone")?;
                if c.inflight >= MAX_AT_SERVER {
                    return Err("too many requests in flight");
                }
                c.inflight += 1;
                c.queued_bytes += body.len();
                let sid = self.next_sid;
                self.next_sid += 1;
                self.news = true;
                self.queue.push_back(Queued::Request {
                    sid,
                    conn: k,
                    client_id: h.id,
                    data: body,
                });
                Ok(())
            }
            FrameKind::Dispose => self.dispose(k, h.id),
            FrameKind::Disposes if !coalesce => Err("a list of disposes not agreed to"),
            FrameKind::Disposes if h.id != 0 => Err("a list of disposes with an id"),
            // No more than can be outstanding (each id is checked below;
            // a repeated one names no reply the second time).
            FrameKind::Disposes if body.len() > 8 * MAX_AT_SERVER => {
                Err("more disposes in one frame than requests in flight")
            }
            FrameKind::Disposes => {
                let r = body
                    .chunks_exact(8)
                    .try_for_each(|id| self.dispose(k, u64::from_le_bytes(id.try_into().unwrap())));
                // Its buffer serves the next frame, unless the connection
                // went quiet with these disposes.
                if let Some(c) = self.conns.get_mut(&k)
                    && c.inflight > 0
                {
                    c.link.tx.recycle(body);
                }
                r
            }
            FrameKind::Reply | FrameKind::Gen => Err("a server's frame from a client"),
            // Answered by the connection layer, never passed on.
            FrameKind::Ping | FrameKind::Stat => Err("a library frame passed to the face"),
        }
    }

    /// The client of connection `k` read the reply to its request `id`:
    /// queue the dispose notice.
    fn dispose(&mut self, k: u64, id: u64) -> Result<(), &'static str> {
        let c = self.conns.get_mut(&k).ok_or("gone")?;
        let sid = c.replied.remove(&id).ok_or("dispose of no reply")?;
        // The client no longer counts it either.
        c.inflight = c.inflight.saturating_sub(1);
        if c.inflight == 0 {
            // Quiet: nothing of the connection's is at the server.
            c.link.tx.quiet_bodies();
        }
        self.news = true;
        self.queue.push_back(Queued::Dispose { sid, conn: k });
        Ok(())
    }

    /// Connection `k` ended: its unread requests are dropped; requests
    /// the server holds and replies the client never confirmed come back
    /// as dispose notices. `why`: the peer's doing, if it was
    /// (`conn::Service::ended`).
    fn conn_gone(&mut self, k: u64, why: Option<&ReadEnd>) {
        let Some(c) = self.remove_conn(k, why) else {
            return;
        };
        self.queue
            .retain(|q| !matches!(q, Queued::Request { conn, .. } if *conn == k));
        let mut notices: Vec<i64> = c.replied.values().copied().collect();
        for (sid, h) in self.held.iter_mut() {
            if h.conn == Some(k) {
                h.conn = None;
                notices.push(*sid);
            }
        }
        notices.sort_unstable();
        let any = !notices.is_empty()
            || self
                .queue
                .iter()
                .any(|q| matches!(q, Queued::Dispose { conn, .. } if *conn == k));
        self.news = true;
        for sid in notices {
            self.queue.push_back(Queued::Dispose { sid, conn: k });
        }
        if any {
            self.gone.insert(k, c.link.peer);
        }
    }

    fn cred_of(&self, k: u64) -> Option<&Cred> {
        self.conns
            .get(&k)
            .map(|c| &c.link.peer)
            .or_else(|| self.gone.get(&k))
    }

    /// The next message, if any, into `buf`.
    pub(super) fn take(&mut self, buf: &mut [u8], cred: Option<&mut caps_cred>) -> Option<Got> {
        let front = self.queue.front()?;
        match front {
            Queued::Request {
                sid,
                conn,
                client_id,
                data,
            } => {
                let (sid, conn, client_id, size) = (*sid, *conn, *client_id, data.len());
                if let Some(out) = cred
                    && let Some(c) = self.cred_of(conn)
                {
                    c.to_c(out);
                }
                if size > buf.len() {
                    return Some(Got {
                        size,
                        id: sid,
                        state: CAPMS_REQUEST,
                    });
                }
                let data = match self.queue.pop_front() {
                    Some(Queued::Request { data, .. }) => {
                        buf[..size].copy_from_slice(&data);
                        Some(data)
                    }
                    _ => None,
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    // Kept while the connection has other requests at
                    // the server (this one counts until its dispose).
                    if let Some(d) = data
                        && c.inflight > 1
                    {
                        c.link.tx.recycle(d);
                    }
                    c.queued_bytes -= size;
                    self.core.account(&mut c.link, c.queued_bytes);
                }
                self.held.insert(
                    sid,
                    Held {
                        conn: Some(conn),
                        client_id,
                    },
                );
                Some(Got {
                    size,
                    id: sid,
                    state: CAPMS_REQUEST,
                })
            }
            Queued::Dispose { sid, conn } => {
                let (sid, conn) = (*sid, *conn);
                if let Some(out) = cred
                    && let Some(c) = self.cred_of(conn)
                {
                    c.to_c(out);
                }
                self.queue.pop_front();
                // A notice of a connection that went away: the request
                // it held is forgotten, and with its last notice its
                // credentials. (A live one's came from a reply: nothing
                // of it is held.)
                if !self.conns.contains_key(&conn) {
                    if self.held.get(&sid).is_some_and(|h| h.conn.is_none()) {
                        self.held.remove(&sid);
                    }
                    if !self
                        .queue
                        .iter()
                        .any(|q| matches!(q, Queued::Dispose { conn: c, .. } if *c == conn))
                    {
                        self.gone.remove(&conn);
                    }
                }
                Some(Got {
                    size: 0,
                    id: sid,
                    state: CAPMS_DISPOSE,
                })
            }
        }
    }

    pub(super) fn reply(&mut self, sid: i64, data: &[u8]) -> Result<(), Errno> {
        let (conn, client_id) = if let Some(h) = self.held.remove(&sid) {
            match h.conn {
                Some(c) => (c, h.client_id),
                // The client went away; its dispose notice is queued.
                None => return Ok(()),
            }
        } else {
            // A request left queued because it was too big may be
            // answered without being read.
            let pos = self
                .queue
                .iter()
                .position(|q| matches!(q, Queued::Request { sid: s, .. } if *s == sid))
                .ok_or(Errno::EINVAL)?;
            match self.queue.remove(pos) {
                Some(Queued::Request {
                    conn,
                    client_id,
                    data,
                    ..
                }) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.queued_bytes -= data.len();
                    }
                    (conn, client_id)
                }
                _ => return Err(Errno::EINVAL),
            }
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        let h = Header::new(FrameKind::Reply, client_id, data.len() as u32);
        c.link.send(Some(&mut self.core), &h, data);
        c.replied.insert(client_id, sid);
        if c.link.tx.flush().is_err() {
            self.conn_gone(conn, None);
        } else {
            self.core.account(&mut c.link, c.queued_bytes);
            self.track(conn);
        }
        Ok(())
    }

    pub(super) fn setgen(&mut self, generation: i64) {
        self.generation = generation;
        let mut dead = Vec::new();
        for (k, c) in self.conns.iter_mut().filter(|(_, c)| c.link.hello_done()) {
            c.link
                .send(Some(&mut self.core), &gen_frame(generation), &[]);
            if c.link.tx.flush().is_err() {
                dead.push(*k);
            }
        }
        for k in dead {
            self.conn_gone(k, None);
        }
        let keys: Vec<u64> = self.conns.keys().copied().collect();
        for k in keys {
            self.track(k);
        }
    }

    pub(super) fn close(&mut self) {
        self.listener.unlink();
    }
}

fn gen_frame(generation: i64) -> Header {
    Header {
        result: generation as u64,
        ..Header::new(FrameKind::Gen, 0, 0)
    }
}

pub(super) fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
