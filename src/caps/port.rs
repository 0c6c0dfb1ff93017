//! CAPS v1 ports: a service (listening socket), a client connection, and
//! the server's side of each client connection ("remote" port).
//!
//! Every port is a `struct caps_port` whose first member is an LWKT port,
//! so LWKT message calls work on it; its vectors implement CAPS:
//!
//! | port | `mp_putport` | `mp_waitport` | `mp_replyport` |
//! |---|---|---|---|
//! | service | `EINVAL` | next request from any connection | fatal |
//! | remote | `EINVAL` | fatal | send the reply back over the socket |
//! | client | send the request, `EASYNC` | wait for replies | queue the reply on the port |
//!
//! Sockets are driven by the cpu's event loop (`crate::cpu::evloop`): a
//! readable connection turns frames into messages. A request is queued on
//! the service port (waking its owner); a reply is copied over the
//! client's original message, which is then completed through its own reply
//! port. A thread waiting for either blocks; when nothing else can run the
//! cpu waits in the event loop.
//!
//! Memory: the library owns request buffers (allocated with a hidden
//! header naming the request id and connection) and frees them once the
//! server has replied. A remote port lives while it is on its service's
//! list or holds unreplied requests (`lport.mp_refs`).

use std::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::{MaybeUninit, size_of};
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::AtomicU32;

use super::conn::{
    Budget, Conn, EV_IN, EV_OUT, Gate, HELLO_DEADLINE, HELLO_TIMEOUT_MS, ReadEnd, Timer, accept,
    fork_generation, handshake, log_hello_drops, set_nonblocking,
};
use super::cred::{Access, Cred};
use super::rendezvous::{self, Errno, Listener};
use super::wire::{FrameKind, Header, Hello, HelloKind, MAX_MSGSIZE, VERSION, WireError};
use crate::abi::{
    CAPPF_SHUTDOWN, CAPT_CLIENT, CAPT_REMOTE, CAPT_SERVICE, EASYNC, MSGF_DONE, MSGF_QUEUED,
    MSGF_REPLY, caps_port, caps_type, lwkt_msg, lwkt_port, thread,
};
use crate::cpu::evloop::{self, Token};
use crate::lwkt::msgport::{self as mp, PortVectors};
use crate::lwkt::queue;
use crate::{fatal, warn};

mod guard;
use guard::{account, hello_timer, inherited, listed, may_read};
mod xcpu;
use xcpu::{
    client_put_elsewhere, drain_handovers, other_cpu, refuse, reply_elsewhere, reply_port_is_local,
};

/// `sizeof(struct lwkt_msg)`: the part of a message the frame header
/// carries; the rest is payload.
const MSG_HDR: usize = size_of::<lwkt_msg>();
/// Largest payload in either direction.
const MAX_BODY: u32 = (MAX_MSGSIZE - MSG_HDR) as u32;
/// Requests a server holds for one connection before it stops reading it.
const MAX_HELD: usize = 256;
/// Reply bytes queued for one connection before the server stops reading
/// its requests.
const MAX_OUT: usize = 4 << 20;
/// Queued reply bytes that make a connection write at once.
const FLUSH_AT: usize = 64 * 1024;
/// Completions remembered for `caps_client_waitreply(port, NULL)`.
const MAX_COMPLETED: usize = 1024;

/// A CAPS port: the C structure first, then our state.
#[repr(C)]
pub struct CapsPort {
    pub c: caps_port,
    kind: Kind,
    /// The fork generation the port was made in (`conn::fork_generation`):
    /// an older one means the port was inherited across `fork()`.
    fork_gen: u32,
    /// An inherited port let go of the parent's socket, node and event
    /// loop registrations (see `inherited`).
    disowned: bool,
    /// Messages handed to this port's cpu by other cpus and not yet
    /// taken there (`xcpu`): a close waits for them.
    handovers: AtomicU32,
}

enum Kind {
    Service(Service),
    Client(Client),
    Remote(Remote),
}

struct Service {
    name: String,
    listener: Option<Listener>,
    token: Option<Token>,
    access: Access,
    remotes: Vec<*mut CapsPort>,
    /// Connections with replies queued but not yet written: written when
    /// the server has no more requests at hand or the cpu goes idle.
    dirty: Vec<*mut CapsPort>,
    idle_hook: Option<u64>,
    /// Connections per peer uid (`conn::Gate`).
    gate: Gate,
    /// Fires at the hello deadline of the oldest connection still
    /// without a hello.
    timer: Option<Timer>,
    /// Bytes buffered for the connections (`conn::Budget`).
    budget: Budget,
    /// Connections not read from until they may be again.
    paused: Vec<*mut CapsPort>,
}

struct Client {
    conn: Conn,
    next_id: u64,
    outstanding: HashMap<u64, Pending, BuildHasherDefault<IdHasher>>,
    completed: VecDeque<*mut lwkt_msg>,
    failed: HashSet<*mut lwkt_msg>,
}

/// Request ids are a counter: spreading them with one multiplication is
/// hash enough (and much cheaper than SipHash on every request and reply).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

struct Pending {
    msg: *mut lwkt_msg,
    capacity: usize,
}

struct Remote {
    conn: Conn,
    /// On its service's `dirty` list.
    dirty: bool,
    service: *mut CapsPort,
    service_name: String,
    hello_done: bool,
    held: usize,
    /// Ids of the requests delivered and not yet replied: a request may
    /// not reuse one (docs/wire-protocol.md).
    ids: HashSet<u64, BuildHasherDefault<IdHasher>>,
    paused: bool,
    /// Bytes of the requests held (delivered, not yet replied).
    held_bytes: usize,
    /// What the service's budget counts for this connection.
    charged: usize,
}

// ---- request buffers ---------------------------------------------------

/// Hidden header in front of every request buffer the library allocates.
#[repr(C, align(16))]
struct ReqHead {
    magic: u64,
    id: u64,
    remote: *mut CapsPort,
    size: usize,
}

const REQ_MAGIC: u64 = u64::from_le_bytes(*b"CAPSREQ1");
const REQ_DEAD: u64 = u64::from_le_bytes(*b"caps-dea");
/// Replied from another cpu, on its way to the connection's cpu.
const REQ_HANDED: u64 = u64::from_le_bytes(*b"CAPSREQh");
const HIDDEN: usize = size_of::<ReqHead>();

/// A zeroed request buffer with room for `MSG_HDR + capacity` bytes.
fn alloc_request(remote: *mut CapsPort, id: u64, capacity: usize) -> *mut lwkt_msg {
    let size = HIDDEN + MSG_HDR + capacity;
    let layout = Layout::from_size_align(size, 16).expect("request layout");
    // SAFETY: `layout` has a non-zero size. Zeroed: whatever part of the
    // buffer the server sends back without writing must not carry old
    // heap contents to another process.
    let p = unsafe { alloc_zeroed(layout) };
    if p.is_null() {
        handle_alloc_error(layout);
    }
    // SAFETY: `p` is a fresh allocation, 16-aligned, big enough for the
    // header followed by the message.
    unsafe {
        p.cast::<ReqHead>().write(ReqHead {
            magic: REQ_MAGIC,
            id,
            remote,
            size,
        });
        p.add(HIDDEN).cast()
    }
}

/// The hidden header of a request buffer.
///
/// # Safety
/// `msg` must come from `alloc_request` and not be freed.
unsafe fn req_head(msg: *mut lwkt_msg) -> *mut ReqHead {
    // SAFETY: per the contract the header sits HIDDEN bytes before.
    unsafe { msg.cast::<u8>().sub(HIDDEN).cast() }
}

/// # Safety
/// `msg` must come from `alloc_request` and not be used afterwards.
unsafe fn free_request(msg: *mut lwkt_msg) {
    // SAFETY: per the contract.
    unsafe {
        let head = req_head(msg);
        let size = (*head).size;
        (*head).magic = REQ_DEAD;
        dealloc(head.cast(), Layout::from_size_align_unchecked(size, 16));
    }
}

// ---- creating ports ----------------------------------------------------

fn vectors(kind: caps_type) -> PortVectors {
    match kind {
        CAPT_SERVICE => PortVectors {
            putport: service_putport,
            waitport: service_waitport,
            replyport: service_replyport,
            abortport: mp::DEFAULT_VECTORS.abortport,
        },
        CAPT_REMOTE => PortVectors {
            putport: remote_putport,
            waitport: remote_waitport,
            replyport: remote_replyport,
            abortport: mp::DEFAULT_VECTORS.abortport,
        },
        _ => PortVectors {
            putport: client_putport,
            waitport: client_waitport,
            replyport: client_replyport,
            abortport: mp::DEFAULT_VECTORS.abortport,
        },
    }
}

/// Allocate a port of `ty` owned by thread `td`.
fn mkport(ty: caps_type, td: *mut thread, kind: Kind) -> *mut CapsPort {
    // SAFETY: caps_port is plain C data; all-zero is a valid value.
    let c: caps_port = unsafe { MaybeUninit::zeroed().assume_init() };
    super::sys::register_handlers();
    let p = Box::into_raw(Box::new(CapsPort {
        c,
        kind,
        fork_gen: fork_generation(),
        disowned: false,
        handovers: AtomicU32::new(0),
    }));
    // SAFETY: `p` is a fresh, live allocation.
    unsafe {
        let c = &raw mut (*p).c;
        mp::initport(&raw mut (*c).lport, td, &vectors(ty));
        (*c).lport.mp_refs = 1;
        (*c).type_ = ty;
        (*c).kqfd = -1;
        (*c).lfd = -1;
        (*c).cfd = -1;
        (*c).clist.tqh_last = &raw mut (*c).clist.tqh_first;
        queue::init(&raw mut (*c).wlist);
        queue::init(&raw mut (*c).mlist);
        (*c).rmsg = &raw mut (*c).rmsg_static;
        (*c).cred.pid = -1;
        (*c).cred.uid = u32::MAX;
        (*c).cred.euid = u32::MAX;
        (*c).cred.gid = u32::MAX;
    }
    p
}

/// Register a port's socket with this cpu's event loop.
///
/// # Safety
/// `p` must be a live port that unregisters before it is freed.
unsafe fn watch(p: *mut CapsPort, fd: i32, events: u32) -> Result<Token, Errno> {
    evloop::register(
        fd,
        events,
        Box::new(move |bits| {
            // SAFETY: the registration is removed before `p` is freed.
            unsafe { on_event(p, bits) }
        }),
    )
    .map_err(Errno)
}

/// `caps_service()`: publish service `name` for the calling user.
pub fn service(
    name: &[u8],
    gid: u32,
    mode: u32,
    flags: i32,
    td: *mut thread,
) -> Result<*mut CapsPort, Errno> {
    // SAFETY: plain id queries.
    let (uid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let path = rendezvous::service_path(name, uid)?;
    let dir = rendezvous::open_service_dir("caps_service", uid)?;
    let excl = flags & crate::abi::CAPS_EXCL != 0;
    let listener = rendezvous::listen_in("caps_service", dir, name, mode, || {
        excl && rendezvous::is_live(&path)
    })?;
    let lfd = listener.fd.as_raw_fd();
    let access = Access {
        owner_uid: uid,
        gid: if gid == u32::MAX { egid } else { gid },
        flags,
    };
    let svc = Service {
        name: String::from_utf8_lossy(name).into_owned(),
        listener: Some(listener),
        token: None,
        access,
        remotes: Vec::new(),
        dirty: Vec::new(),
        idle_hook: None,
        gate: Gate::new(uid),
        timer: None,
        budget: Budget::new(uid),
        paused: Vec::new(),
    };
    let p = mkport(CAPT_SERVICE, td, Kind::Service(svc));
    // SAFETY: `p` is live; it unregisters in `close`.
    unsafe {
        (*p).c.lfd = lfd;
        Cred::of_self().to_c(&mut (*p).c.cred);
        match watch(p, lfd, EV_IN) {
            Ok(t) => {
                if let Kind::Service(s) = &mut (*p).kind {
                    s.token = Some(t);
                    // SAFETY (of the hook): it is removed before `p` is freed.
                    s.idle_hook = Some(evloop::add_idle_hook(Box::new(move || flush_dirty(p))));
                    s.timer = hello_timer(p);
                }
            }
            Err(e) => {
                close(p);
                return Err(e);
            }
        }
    }
    Ok(p)
}

/// `caps_client()`: connect to service `name` of user `uid` (`u32::MAX`:
/// the caller's, then root's).
pub fn client(name: &[u8], uid: u32, td: *mut thread) -> Result<*mut CapsPort, Errno> {
    if uid == u32::MAX {
        // SAFETY: plain id query.
        let me = unsafe { libc::geteuid() };
        let first = client(name, me, td);
        if first.is_ok() || me == 0 {
            return first;
        }
        return client(name, 0, td);
    }
    let path = rendezvous::service_path(name, uid)?;
    let hello = Hello {
        version: VERSION,
        kind: HelloKind::Client,
        max_msgsize: MAX_MSGSIZE as u32,
        status: 0,
    };
    let fd = handshake(
        &path,
        &hello,
        (Some(uid), None),
        &|| {},
        "caps_client",
        name,
        HELLO_TIMEOUT_MS,
    )?;
    let cfd = fd.as_raw_fd();
    set_nonblocking(cfd);
    let peer = Cred::of_peer(cfd).unwrap_or_default();
    let cl = Client {
        conn: Conn::new(fd, MAX_BODY),
        next_id: 1,
        outstanding: HashMap::default(),
        completed: VecDeque::new(),
        failed: HashSet::new(),
    };
    let p = mkport(CAPT_CLIENT, td, Kind::Client(cl));
    // SAFETY: `p` is live; it unregisters in `close`.
    unsafe {
        (*p).c.cfd = cfd;
        peer.to_c(&mut (*p).c.cred);
        match watch(p, cfd, EV_IN) {
            Ok(t) => {
                if let Kind::Client(c) = &mut (*p).kind {
                    c.conn.token = Some(t);
                }
            }
            Err(e) => {
                close(p);
                return Err(e);
            }
        }
    }
    Ok(p)
}

// ---- events ------------------------------------------------------------

/// Socket readiness for port `p`.
///
/// # Safety
/// `p` must be live.
unsafe fn on_event(p: *mut CapsPort, bits: u32) {
    // SAFETY: `p` is live per the contract.
    let ty = unsafe { (*p).c.type_ };
    // SAFETY: as above; each handler keeps `p` valid or frees it last.
    unsafe {
        match ty {
            CAPT_SERVICE => accept_all(p),
            CAPT_REMOTE => remote_event(p, bits),
            _ => client_event(p, bits),
        }
    }
}

/// Accept every pending connection on a service.
unsafe fn accept_all(svc: *mut CapsPort) {
    loop {
        // SAFETY: `svc` is live; its listen descriptor is open.
        let (fd, peer) = match accept(unsafe { (*svc).c.lfd }, "caps_service") {
            Ok(Some(conn)) => conn,
            Ok(None) => return,
            Err(e) => {
                // SAFETY: `svc` is live.
                let name = unsafe { service_name(svc) };
                warn!("caps_service", "{name}: accept: {}", e);
                return;
            }
        };
        let raw = fd.as_raw_fd();
        // SAFETY: `svc` is live.
        let (td, name) = unsafe { ((*svc).c.lport.mp_td, service_name(svc)) };
        // SAFETY: `svc` is a live service port.
        let Kind::Service(s) = (unsafe { &mut (*svc).kind }) else {
            return;
        };
        if !s.gate.admit("caps_service", &name, &peer) {
            continue;
        }
        crate::trace!(
            "caps_service",
            "{name}: accepted a connection from pid {} (uid {})",
            peer.pid,
            peer.uid
        );
        let remote = Remote {
            conn: Conn::new(fd, MAX_BODY),
            service: svc,
            service_name: name,
            dirty: false,
            hello_done: false,
            held: 0,
            ids: HashSet::default(),
            paused: false,
            held_bytes: 0,
            charged: 0,
        };
        let r = mkport(CAPT_REMOTE, td, Kind::Remote(remote));
        // SAFETY: `r` and `svc` are live; `r` unregisters when shut down.
        unsafe {
            (*r).c.cfd = raw;
            (*r).c.server = &raw mut (*svc).c;
            peer.to_c(&mut (*r).c.cred);
            match watch(r, raw, EV_IN) {
                Ok(t) => {
                    if let Kind::Remote(rm) = &mut (*r).kind {
                        rm.conn.token = Some(t);
                    }
                    if let Kind::Service(s) = &mut (*svc).kind {
                        s.remotes.push(r);
                        if let Some(t) = s.timer.as_mut()
                            && t.at.is_none()
                        {
                            t.arm(Some(std::time::Instant::now() + HELLO_DEADLINE));
                        }
                    }
                }
                Err(_) => {
                    if let Kind::Service(s) = &mut (*svc).kind {
                        s.gate.release(peer.uid);
                    }
                    free_port(r);
                }
            }
        }
    }
}

/// # Safety
/// `p` must be a live service port.
unsafe fn service_name(p: *mut CapsPort) -> String {
    // SAFETY: per the contract.
    match unsafe { &(*p).kind } {
        Kind::Service(s) => s.name.clone(),
        _ => String::new(),
    }
}

fn remote_of<'a>(p: *mut CapsPort) -> &'a mut Remote {
    // SAFETY: callers pass live remote ports; the reference does not
    // outlive the call that uses it.
    match unsafe { &mut (*p).kind } {
        Kind::Remote(r) => r,
        _ => fatal!("libcaps", "port {p:p} is not a CAPS connection"),
    }
}

fn client_of<'a>(p: *mut CapsPort) -> &'a mut Client {
    // SAFETY: as for `remote_of`.
    match unsafe { &mut (*p).kind } {
        Kind::Client(c) => c,
        _ => fatal!("libcaps", "port {p:p} is not a CAPS client port"),
    }
}

/// Readiness of the server's side of a connection.
unsafe fn remote_event(r: *mut CapsPort, bits: u32) {
    let rm = remote_of(r);
    if rm.conn.dead {
        return;
    }
    if bits & !EV_OUT != 0 {
        rm.conn.drained = false;
    }
    if bits & EV_OUT != 0 {
        if let Err(e) = rm.conn.flush() {
            // SAFETY: `r` is live.
            unsafe { remote_shutdown(r, Some(&ReadEnd::Errno(e))) };
            return;
        }
        let svc = rm.service;
        // SAFETY: `r` is live; reads resumed by `account` may shut it
        // down (and free it), so whether it is still listed is checked.
        unsafe {
            account(r);
            if svc.is_null() || !listed(svc, r) {
                return;
            }
        }
    }
    // SAFETY: `r` is live.
    unsafe { remote_read(r) };
}

/// Read requests from a connection while the server can take them.
unsafe fn remote_read(r: *mut CapsPort) {
    let rm = remote_of(r);
    if !rm.hello_done {
        match rm.conn.take_hello() {
            Ok(None) => return,
            Ok(Some(bytes)) => {
                // SAFETY: `r` is live.
                let peer = unsafe { cred_of(r) };
                let status = match Hello::decode(&bytes, HelloKind::Client, VERSION) {
                    Err(w) => {
                        warn!(
                            "caps_service",
                            "{}: dropping client pid {}: bad hello: {w}", rm.service_name, peer.pid
                        );
                        libc::EPROTO
                    }
                    // SAFETY: the service outlives its listed remotes.
                    Ok(_) if !unsafe { admits(rm.service, &peer) } => libc::EACCES,
                    Ok(_) => 0,
                };
                let reply = Hello {
                    version: VERSION,
                    kind: HelloKind::Server,
                    max_msgsize: MAX_MSGSIZE as u32,
                    status: status as u32,
                };
                rm.conn.out.extend_from_slice(&reply.encode());
                let flushed = rm.conn.flush();
                if status != 0 || flushed.is_err() {
                    // SAFETY: `r` is live.
                    unsafe { remote_shutdown(r, None) };
                    return;
                }
                rm.hello_done = true;
            }
            Err(end) => {
                // SAFETY: `r` is live.
                unsafe { remote_shutdown(r, Some(&end)) };
                return;
            }
        }
    }
    loop {
        let rm = remote_of(r);
        // SAFETY: `r` is live.
        if !unsafe { may_read(r) } {
            if !rm.paused {
                rm.paused = true;
                let svc = rm.service;
                // SAFETY: the service of a listed remote is live.
                let kind = (!svc.is_null()).then(|| unsafe { &mut (*svc).kind });
                if let Some(Kind::Service(s)) = kind {
                    s.paused.push(r);
                }
            }
            let ev = rm.conn.events & !EV_IN;
            rm.conn.set_events(ev);
            return;
        }
        match rm.conn.next_frame() {
            Ok(None) => return,
            Ok(Some((h, body))) if h.kind == FrameKind::Request => {
                if !rm.ids.insert(h.id) {
                    let why = WireError::BadField("request id (still outstanding)", h.id);
                    // SAFETY: `r` is live.
                    unsafe { remote_shutdown(r, Some(&ReadEnd::Protocol(why))) };
                    return;
                }
                // SAFETY: `r` is live.
                unsafe { deliver_request(r, &h, &body) };
            }
            Ok(Some(_)) => {
                // SAFETY: `r` is live.
                unsafe {
                    remote_shutdown(
                        r,
                        Some(&ReadEnd::Protocol(WireError::BadKind(
                            FrameKind::Reply as u16,
                        ))),
                    )
                };
                return;
            }
            Err(end) => {
                // SAFETY: `r` is live.
                unsafe { remote_shutdown(r, Some(&end)) };
                return;
            }
        }
    }
}

/// # Safety
/// `r` must be live.
unsafe fn cred_of(r: *mut CapsPort) -> Cred {
    // SAFETY: per the contract.
    let c = unsafe { &(*r).c.cred };
    let n = (c.ngroups.max(0) as usize).min(c.groups.len());
    Cred {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
        groups: c.groups[..n].to_vec(),
    }
}

/// # Safety
/// `svc` must be NULL or live.
unsafe fn admits(svc: *mut CapsPort, peer: &Cred) -> bool {
    if svc.is_null() {
        return false;
    }
    // SAFETY: per the contract.
    match unsafe { &(*svc).kind } {
        Kind::Service(s) => s.access.admits(peer),
        _ => false,
    }
}

/// Turn a request frame into a message on the service port.
unsafe fn deliver_request(r: *mut CapsPort, h: &Header, body: &[u8]) {
    let rm = remote_of(r);
    if rm.service.is_null() {
        return;
    }
    let msg = alloc_request(r, h.id, h.capacity as usize);
    // SAFETY: `msg` has room for MSG_HDR + capacity >= MSG_HDR + body bytes;
    // `r` and its service are live.
    unsafe {
        (*msg).ms_cmd = h.cmd;
        (*msg).ms_msgsize = (MSG_HDR + body.len()) as i32;
        (*msg).ms_maxsize = (MSG_HDR + h.capacity as usize) as i32;
        (*msg).u.ms_result64 = h.result as i64;
        (*msg).ms_pad = h.pad;
        (*msg).ms_reply_port = &raw mut (*r).c.lport;
        ptr::copy_nonoverlapping(body.as_ptr(), msg.cast::<u8>().add(MSG_HDR), body.len());
        rm.held += 1;
        rm.held_bytes += (*req_head(msg)).size;
        (*r).c.lport.mp_refs += 1;
        let svc_port = &raw mut (*rm.service).c.lport;
        (*msg).ms_target_port = svc_port;
        mp::default_putport(svc_port, msg);
        account(r);
    }
}

/// Write the queued replies of every connection on `svc`'s dirty list.
///
/// # Safety
/// `svc` must be a live service port.
unsafe fn flush_dirty(svc: *mut CapsPort) {
    // SAFETY: listed remotes are live (shutdown takes them off the list).
    unsafe {
        let Kind::Service(s) = &mut (*svc).kind else {
            return;
        };
        for r in std::mem::take(&mut s.dirty) {
            if !listed(svc, r) {
                continue;
            }
            let rm = remote_of(r);
            rm.dirty = false;
            match rm.conn.flush() {
                Err(e) => remote_shutdown(r, Some(&ReadEnd::Errno(e))),
                Ok(()) => account(r),
            }
        }
    }
}

/// Shut down the server's side of a connection. Requests it still holds
/// keep the port alive until they are replied.
unsafe fn remote_shutdown(r: *mut CapsPort, why: Option<&ReadEnd>) {
    let rm = remote_of(r);
    if rm.conn.dead {
        return;
    }
    if let Some(why @ ReadEnd::Protocol(_)) = why {
        // SAFETY: `r` is live.
        let pid = unsafe { (*r).c.cred.pid };
        warn!(
            "caps_service",
            "{}: dropping client pid {pid}: {why}", rm.service_name
        );
    }
    rm.conn.close();
    // SAFETY: `r` is live; the service (if any) is live.
    unsafe {
        crate::trace!(
            "caps_service",
            "{}: connection from pid {} (uid {}) dropped",
            rm.service_name,
            (*r).c.cred.pid,
            (*r).c.cred.uid
        );
        (*r).c.cfd = -1;
        (*r).c.flags |= CAPPF_SHUTDOWN;
        if !rm.service.is_null()
            && let Kind::Service(s) = &mut (*rm.service).kind
        {
            s.remotes.retain(|&x| x != r);
            s.dirty.retain(|&x| x != r);
            s.paused.retain(|&x| x != r);
            s.gate.release((*r).c.cred.uid);
            s.budget
                .update((*r).c.cred.uid, std::mem::take(&mut rm.charged), 0);
        }
        rm.dirty = false;
        rm.service = ptr::null_mut();
        release(r);
    }
}

/// Drop one reference of a remote port; free it at zero.
unsafe fn release(r: *mut CapsPort) {
    // SAFETY: `r` is live until its last reference goes.
    unsafe {
        (*r).c.lport.mp_refs -= 1;
        if (*r).c.lport.mp_refs <= 0 {
            free_port(r);
        }
    }
}

unsafe fn free_port(p: *mut CapsPort) {
    // SAFETY: `p` came from Box::into_raw in `mkport` and is unregistered.
    drop(unsafe { Box::from_raw(p) });
}

/// Readiness of a client connection: replies.
unsafe fn client_event(p: *mut CapsPort, bits: u32) {
    let cl = client_of(p);
    if cl.conn.dead {
        return;
    }
    if bits & !EV_OUT != 0 {
        cl.conn.drained = false;
    }
    if bits & EV_OUT != 0
        && let Err(e) = cl.conn.flush()
    {
        // SAFETY: `p` is live.
        unsafe { client_shutdown(p, Some(&ReadEnd::Errno(e))) };
        return;
    }
    loop {
        let cl = client_of(p);
        match cl.conn.next_frame() {
            Ok(None) => return,
            Ok(Some((h, body))) => {
                // SAFETY: `p` is live.
                if let Err(w) = unsafe { deliver_reply(p, &h, &body) } {
                    // SAFETY: `p` is live.
                    unsafe { client_shutdown(p, Some(&ReadEnd::Protocol(w))) };
                    return;
                }
            }
            Err(end) => {
                // SAFETY: `p` is live.
                unsafe { client_shutdown(p, Some(&end)) };
                return;
            }
        }
    }
}

/// Copy a reply over the client's original message and complete it
/// through the message's reply port.
unsafe fn deliver_reply(p: *mut CapsPort, h: &Header, body: &[u8]) -> Result<(), WireError> {
    let cl = client_of(p);
    if h.kind != FrameKind::Reply {
        return Err(WireError::BadKind(h.kind as u16));
    }
    let Some(pend) = cl.outstanding.remove(&h.id) else {
        return Err(WireError::BadField("reply id", h.id));
    };
    if body.len() > pend.capacity {
        cl.outstanding.insert(h.id, pend);
        return Err(WireError::TooLarge(body.len() as u64));
    }
    let msg = pend.msg;
    // SAFETY: the client keeps `msg` alive while its request is
    // outstanding; it has room for MSG_HDR + capacity bytes.
    unsafe {
        (*msg).ms_cmd = h.cmd;
        (*msg).ms_error = h.error;
        (*msg).u.ms_result64 = h.result as i64;
        (*msg).ms_pad = h.pad;
        (*msg).ms_msgsize = (MSG_HDR + body.len()) as i32;
        ptr::copy_nonoverlapping(body.as_ptr(), msg.cast::<u8>().add(MSG_HDR), body.len());
        complete(p, msg);
    }
    Ok(())
}

/// Hand a finished message back through its reply port and remember it
/// for `caps_client_waitreply(port, NULL)`.
unsafe fn complete(p: *mut CapsPort, msg: *mut lwkt_msg) {
    let cl = client_of(p);
    // SAFETY: `msg` is live (see deliver_reply); its reply port, if any,
    // is a valid port of the application.
    unsafe {
        let rport = (*msg).ms_reply_port;
        if reply_port_is_local(rport) {
            if cl.completed.len() >= MAX_COMPLETED {
                cl.completed.pop_front();
            }
            cl.completed.push_back(msg);
        }
        match rport.as_ref().and_then(|r| r.mp_replyport) {
            Some(reply) => reply(rport, msg),
            None => (*msg).ms_flags |= MSGF_DONE | MSGF_REPLY,
        }
        mp::wake_owner(&raw mut (*p).c.lport);
    }
}

/// Shut down a client connection: every outstanding request completes
/// with `EIO` through its reply port.
unsafe fn client_shutdown(p: *mut CapsPort, why: Option<&ReadEnd>) {
    let cl = client_of(p);
    if cl.conn.dead {
        return;
    }
    if let Some(why @ ReadEnd::Protocol(_)) = why {
        warn!("caps_client", "dropping connection: {why}");
    }
    cl.conn.close();
    // SAFETY: `p` is live.
    unsafe {
        (*p).c.cfd = -1;
        (*p).c.flags |= CAPPF_SHUTDOWN;
    }
    let mut pending: Vec<(u64, Pending)> = cl.outstanding.drain().collect();
    pending.sort_by_key(|(id, _)| *id);
    for (_, pend) in pending {
        // SAFETY: outstanding messages are live (the client keeps them).
        unsafe {
            (*pend.msg).ms_error = libc::EIO;
            if reply_port_is_local((*pend.msg).ms_reply_port) {
                client_of(p).failed.insert(pend.msg);
            }
            complete(p, pend.msg);
        }
    }
    // A thread waiting for any reply learns that none will come.
    // SAFETY: `p` is live.
    unsafe { mp::wake_owner(&raw mut (*p).c.lport) };
}

// ---- port vectors --------------------------------------------------------

unsafe extern "C" fn service_putport(_port: *mut lwkt_port, _msg: *mut lwkt_msg) -> i32 {
    libc::EINVAL
}

/// Next request from any connection; NULL for a specific message or once
/// the service is closed.
unsafe extern "C" fn service_waitport(
    port: *mut lwkt_port,
    msg: *mut lwkt_msg,
) -> *mut libc::c_void {
    if !msg.is_null() {
        return ptr::null_mut();
    }
    let p = port.cast::<CapsPort>();
    // SAFETY: `p` is a live service port (vector contract).
    if unsafe { inherited(p, Some("lwkt_waitport")) } {
        return ptr::null_mut();
    }
    // SAFETY: as above.
    if let Some(ogd) = unsafe { other_cpu(port) } {
        // SAFETY: `ogd` is the port's live cpu.
        unsafe { refuse("lwkt_waitport", port, ogd) };
        return ptr::null_mut();
    }
    loop {
        // SAFETY: `port` is the first member of a live service port.
        unsafe {
            let m = mp::getport(port);
            if !m.is_null() {
                return m.cast();
            }
            if (*p).c.flags & CAPPF_SHUTDOWN != 0 {
                return ptr::null_mut();
            }
            mp::check_owner("lwkt_waitport", port);
            mp::block_on_port("lwkt_waitport", port);
        }
    }
}

unsafe extern "C" fn service_replyport(port: *mut lwkt_port, msg: *mut lwkt_msg) {
    fatal!(
        "lwkt_replymsg",
        "message {msg:p} has service port {port:p} as its reply port"
    )
}

unsafe extern "C" fn remote_putport(_port: *mut lwkt_port, _msg: *mut lwkt_msg) -> i32 {
    libc::EINVAL
}

unsafe extern "C" fn remote_waitport(
    port: *mut lwkt_port,
    _msg: *mut lwkt_msg,
) -> *mut libc::c_void {
    fatal!(
        "lwkt_waitport",
        "port {port:p} is a CAPS connection: wait on its service port"
    )
}

/// The server replies: send the message back, free it.
unsafe extern "C" fn remote_replyport(port: *mut lwkt_port, msg: *mut lwkt_msg) {
    let r = port.cast::<CapsPort>();
    // SAFETY: `msg` was delivered by `deliver_request` (checked through
    // the hidden header's magic and owner before anything else is used).
    unsafe {
        let head = req_head(msg);
        if (*head).magic != REQ_MAGIC || (*head).remote != r {
            fatal!(
                "lwkt_replymsg",
                "message {msg:p} was not received on connection {port:p} (or was replied twice)"
            );
        }
        if (*r).fork_gen == fork_generation()
            && let Some(ogd) = other_cpu(port)
        {
            reply_elsewhere(port, msg, ogd);
            return;
        }
        let rm = remote_of(r);
        rm.held -= 1;
        rm.held_bytes -= (*head).size;
        rm.ids.remove(&(*head).id);
        if inherited(r, None) {
            // Received by the parent: its reply is the parent's to send.
            free_request(msg);
            release(r);
            return;
        }
        if !rm.conn.dead {
            let max = (*head).size - HIDDEN;
            let size = (*msg).ms_msgsize as usize;
            let (error, body_len) = if (MSG_HDR..=max).contains(&size) {
                ((*msg).ms_error, size - MSG_HDR)
            } else {
                warn!(
                    "lwkt_replymsg",
                    "{}: reply size {size} outside {MSG_HDR}..={max}: sent as EMSGSIZE",
                    rm.service_name
                );
                (libc::EMSGSIZE, 0)
            };
            let h = Header {
                kind: FrameKind::Reply,
                body_len: body_len as u32,
                id: (*head).id,
                capacity: 0,
                cmd: (*msg).ms_cmd,
                error,
                result: (*msg).u.ms_result64 as u64,
                pad: (*msg).ms_pad,
            };
            let body = std::slice::from_raw_parts(msg.cast::<u8>().add(MSG_HDR), body_len);
            rm.conn.push_frame(&h, body);
            let svc = rm.service;
            let more_at_hand =
                !svc.is_null() && !queue::first(&raw const (*svc).c.lport.mp_msgq).is_null();
            if more_at_hand && rm.conn.queued() < FLUSH_AT {
                // The server will take its next request without blocking:
                // let replies accumulate and write them in one go.
                if !rm.dirty {
                    rm.dirty = true;
                    if let Kind::Service(s) = &mut (*svc).kind {
                        s.dirty.push(r);
                    }
                }
                free_request(msg);
                account(r);
                release(r);
                return;
            }
            if !svc.is_null() {
                flush_dirty(svc);
            }
            if let Err(e) = remote_of(r).conn.flush() {
                free_request(msg);
                remote_shutdown(r, Some(&ReadEnd::Errno(e)));
                release(r);
                return;
            }
        }
        free_request(msg);
        // Less buffered now: this or another paused connection may be
        // read again.
        account(r);
        release(r);
    }
}

/// The client sends a request: `EASYNC`, or an error at once.
unsafe extern "C" fn client_putport(port: *mut lwkt_port, msg: *mut lwkt_msg) -> i32 {
    let p = port.cast::<CapsPort>();
    // SAFETY: `p` is a live client port (vector contract).
    if unsafe { inherited(p, Some("lwkt_beginmsg")) } {
        return libc::ENOTCONN;
    }
    // SAFETY: `msg` is the caller's live message of at least
    // `ms_msgsize` bytes (checked against the limits first).
    unsafe {
        let (size, max) = ((*msg).ms_msgsize, (*msg).ms_maxsize);
        if size < MSG_HDR as i32 || size > max || max > MAX_MSGSIZE as i32 {
            warn!(
                "lwkt_beginmsg",
                "CAPS message {msg:p}: need {MSG_HDR} <= ms_msgsize ({size}) <= ms_maxsize ({max}) <= {MAX_MSGSIZE}"
            );
            return libc::EINVAL;
        }
        if let Some(ogd) = other_cpu(port) {
            return client_put_elsewhere(p, msg, ogd);
        }
        client_send(p, msg)
    }
}

/// Send request `msg` (checked) on client port `p` of the current cpu:
/// `EASYNC`, or `EIO` at once when the connection is dead.
///
/// # Safety
/// `p` must be a live client port of the current cpu, `msg` the caller's
/// live message of `ms_msgsize` bytes.
unsafe fn client_send(p: *mut CapsPort, msg: *mut lwkt_msg) -> i32 {
    let cl = client_of(p);
    // SAFETY: per the contract.
    unsafe {
        let (size, max) = ((*msg).ms_msgsize, (*msg).ms_maxsize);
        if cl.conn.dead {
            return libc::EIO;
        }
        (*msg).ms_flags &= !(MSGF_DONE | MSGF_REPLY | MSGF_QUEUED);
        let id = cl.next_id;
        cl.next_id += 1;
        let body_len = size as usize - MSG_HDR;
        let h = Header {
            kind: FrameKind::Request,
            body_len: body_len as u32,
            id,
            capacity: (max as usize - MSG_HDR) as u32,
            cmd: (*msg).ms_cmd,
            error: 0,
            result: (*msg).u.ms_result64 as u64,
            pad: (*msg).ms_pad,
        };
        let body = std::slice::from_raw_parts(msg.cast::<u8>().add(MSG_HDR), body_len);
        cl.conn.push_frame(&h, body);
        cl.outstanding.insert(
            id,
            Pending {
                msg,
                capacity: max as usize - MSG_HDR,
            },
        );
        if let Err(e) = cl.conn.flush() {
            client_shutdown(p, Some(&ReadEnd::Errno(e)));
        }
    }
    EASYNC
}

/// `caps_client_waitreply`: wait for `msg`'s reply (NULL: any reply).
/// NULL when the connection failed.
unsafe extern "C" fn client_waitport(
    port: *mut lwkt_port,
    msg: *mut lwkt_msg,
) -> *mut libc::c_void {
    let p = port.cast::<CapsPort>();
    // SAFETY: `p` is a live client port (vector contract).
    if unsafe { inherited(p, Some("caps_client_waitreply")) } {
        return ptr::null_mut();
    }
    // SAFETY: as above.
    if let Some(ogd) = unsafe { other_cpu(port) } {
        // SAFETY: `ogd` is the port's live cpu.
        unsafe { refuse("caps_client_waitreply", port, ogd) };
        return ptr::null_mut();
    }
    loop {
        let cl = client_of(p);
        // SAFETY: `msg` (when given) is the caller's live message; messages
        // in `completed` were completed by us and belong to the caller.
        unsafe {
            let done = if msg.is_null() {
                cl.completed.pop_front()
            } else if ptr::read_volatile(&raw const (*msg).ms_flags) & MSGF_DONE != 0 {
                cl.completed.retain(|&m| m != msg);
                Some(msg)
            } else {
                None
            };
            if let Some(m) = done {
                unqueue_from_reply_port(m);
                // Only a dead connection has failed messages.
                if cl.conn.dead && cl.failed.remove(&m) {
                    return ptr::null_mut();
                }
                return m.cast();
            }
            if cl.conn.dead {
                return ptr::null_mut();
            }
            mp::check_owner("caps_client_waitreply", port);
            mp::block_on_port("caps_client_waitreply", port);
        }
    }
}

/// A completed message may sit on its reply port's queue (asynchronous
/// reply); the caller of waitreply takes it from there.
unsafe fn unqueue_from_reply_port(m: *mut lwkt_msg) {
    // SAFETY: `m` is live; if queued, it is on its reply port's queue.
    unsafe {
        let rport = (*m).ms_reply_port;
        if (*m).ms_flags & MSGF_QUEUED != 0 && !rport.is_null() {
            queue::remove(&raw mut (*rport).mp_msgq, m);
            (*m).ms_flags &= !MSGF_QUEUED;
        }
    }
}

/// Replies to messages whose reply port is the client port itself are
/// queued there (`lwkt_getport`, `caps_client_waitreply`).
unsafe extern "C" fn client_replyport(port: *mut lwkt_port, msg: *mut lwkt_msg) {
    // SAFETY: both are live (vector contract).
    unsafe {
        if let Some(ogd) = other_cpu(port) {
            reply_elsewhere(port, msg, ogd);
            return;
        }
        queue::insert_tail(&raw mut (*port).mp_msgq, msg);
        (*msg).ms_flags |= MSGF_DONE | MSGF_REPLY | MSGF_QUEUED;
        mp::wake_owner(port);
    }
}

// ---- closing -------------------------------------------------------------

/// `caps_close()`: shut the port down and free it. A service stops
/// listening, removes its socket node and drops every connection; a client
/// completes its outstanding requests with `EIO`; a connection is dropped
/// (its unreplied requests stay valid until replied).
///
/// # Safety
/// `p` must be a live port made by this module; it is freed (a connection
/// port once its requests are replied).
pub unsafe fn close(p: *mut CapsPort) {
    // SAFETY: `p` is live per the contract.
    unsafe {
        // In a fork() child: free only this process's copy.
        let inherited = inherited(p, None);
        if !inherited && let Some(ogd) = other_cpu(&raw mut (*p).c.lport) {
            refuse("caps_close", &raw mut (*p).c.lport, ogd);
            return;
        }
        if !inherited {
            drain_handovers(p);
        }
        match (*p).c.type_ {
            CAPT_SERVICE => {
                flush_dirty(p);
                let Kind::Service(s) = &mut (*p).kind else {
                    unreachable!()
                };
                if let Some(h) = s.idle_hook.take() {
                    evloop::remove_idle_hook(h);
                }
                if let Some(t) = s.token.take() {
                    evloop::unregister(t);
                }
                if let Some(t) = s.timer.take().and_then(|t| t.token) {
                    evloop::unregister(t);
                }
                if let Some(l) = s.listener.take() {
                    l.unlink();
                }
                (*p).c.lfd = -1;
                (*p).c.flags |= CAPPF_SHUTDOWN;
                mp::wake_owner(&raw mut (*p).c.lport);
                for r in std::mem::take(&mut s.remotes) {
                    remote_of(r).service = ptr::null_mut();
                    remote_shutdown(r, None);
                }
                // requests received but never retrieved
                loop {
                    let m = mp::getport(&raw mut (*p).c.lport);
                    if m.is_null() {
                        break;
                    }
                    let r = (*req_head(m)).remote;
                    remote_of(r).held -= 1;
                    free_request(m);
                    release(r);
                }
                free_port(p);
            }
            CAPT_REMOTE => {
                remote_shutdown(p, None);
            }
            CAPT_CLIENT => {
                client_shutdown(p, None);
                free_port(p);
            }
            _ => {}
        }
    }
}

/// The `type` of a CAPS port (the C API dispatches on it).
///
/// # Safety
/// `p` must point to readable memory of a `caps_port`.
pub unsafe fn type_of(p: *mut caps_port) -> caps_type {
    // SAFETY: per the contract.
    unsafe { (*p).type_ }
}
