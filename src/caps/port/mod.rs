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

use std::collections::{HashSet, VecDeque};
use std::mem::{MaybeUninit, size_of};
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::AtomicU32;

use super::conn::{
    self, EV_IN, HELLO_TIMEOUT_MS, Timer, Transport, client_transport, fork_generation, handshake,
};
use super::cred::{Access, Cred};
use super::errno::Errno;
use super::idhash::{IdMap, IdSet};
use super::rendezvous::{self, Listener};
use super::wire::{Hello, HelloKind, MAX_MSGSIZE, VERSION};
use crate::abi::{
    CAPPF_SHUTDOWN, CAPT_CLIENT, CAPT_REMOTE, CAPT_SERVICE, caps_port, caps_type, lwkt_msg, thread,
};
use crate::cpu::evloop::{self, Token};
use crate::fatal;
use crate::lwkt::msgport::{self as mp, PortVectors};
use crate::lwkt::queue;

mod client;
mod guard;
mod request;
mod server;
mod xcpu;
use client::{client_close, client_event, client_putport, client_replyport, client_waitport};
use guard::{hello_timer, inherited};
use request::{free_request, req_head};
use server::{
    accept_all, flush_dirty, release, remote_event, remote_putport, remote_replyport,
    remote_shutdown, remote_waitport, service_putport, service_replyport, service_waitport,
};
use xcpu::{drain_handovers, other_cpu, refuse};

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
/// Request ids a connection's table keeps room for once it has none
/// (more room, left by a burst, is freed: a quiet connection stays small).
const QUIET_KEEP: usize = 32;

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
    Connection(Connection),
}

struct Service {
    /// Admission, budget and log lines (the connection layer's).
    core: conn::Service,
    name: String,
    listener: Option<Listener>,
    token: Option<Token>,
    access: Access,
    remotes: Vec<*mut CapsPort>,
    /// Connections with replies queued but not yet written: written when
    /// the server has no more requests at hand or the cpu goes idle.
    dirty: Vec<*mut CapsPort>,
    idle_hook: Option<u64>,
    /// Fires at the hello deadline of the oldest connection still
    /// without a hello.
    timer: Option<Timer>,
    /// Connections not read from until they may be again.
    paused: Vec<*mut CapsPort>,
    /// The owner is blocked in `lwkt_waitport` on the port: a
    /// `caps_close` meanwhile (from another thread of the cpu) only shuts
    /// it down, marking it `closed`, and the waiter frees it as it wakes.
    waiting: bool,
    closed: bool,
}

struct Client {
    conn: Transport,
    next_id: u64,
    outstanding: IdMap<u64, Pending>,
    completed: VecDeque<*mut lwkt_msg>,
    failed: HashSet<*mut lwkt_msg>,
    /// Calls of this module on the port under way that may run the
    /// application's reply vectors, or whose thread waits on the port
    /// (`client::hold`): a `caps_close` meanwhile only shuts the port
    /// down, and the last of them frees it.
    holds: u32,
    /// `caps_close` was called: freed once `holds` is back to 0.
    closed: bool,
}

struct Pending {
    msg: *mut lwkt_msg,
    capacity: usize,
}

/// A v1 service's side of one client connection (a `CAPT_REMOTE` port).
struct Connection {
    link: conn::Connection,
    /// On its service's `dirty` list.
    dirty: bool,
    service: *mut CapsPort,
    service_name: String,
    held: usize,
    /// Ids of the requests delivered and not yet replied: a request may
    /// not reuse one (docs/wire-protocol.md).
    ids: IdSet<u64>,
    paused: bool,
    /// Bytes of the requests held (delivered, not yet replied).
    held_bytes: usize,
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
    let label = String::from_utf8_lossy(name).into_owned();
    let core = conn::Service::new(
        "caps_service",
        label.clone(),
        uid,
        VERSION,
        MAX_MSGSIZE as u32,
        MAX_BODY,
    );
    let svc = Service {
        core,
        name: label,
        listener: Some(listener),
        token: None,
        access,
        remotes: Vec::new(),
        dirty: Vec::new(),
        idle_hook: None,
        timer: None,
        paused: Vec::new(),
        waiting: false,
        closed: false,
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
    let (fd, shm, _) = handshake(
        &path,
        &hello,
        (Some(uid), None),
        &|| {},
        "caps_client",
        name,
        HELLO_TIMEOUT_MS,
    )?;
    let cfd = fd.as_raw_fd();
    let peer = Cred::of_peer(cfd).unwrap_or_default();
    let conn = client_transport(fd, MAX_BODY, shm, "caps_client");
    let cl = Client {
        conn,
        next_id: 1,
        outstanding: IdMap::default(),
        completed: VecDeque::new(),
        failed: HashSet::new(),
        holds: 0,
        closed: false,
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
/// `p` must be live. The handlers fetch `&mut` through
/// `service_of` and `connection_of`: no reference to the state of `p`, of
/// its service or of its connections may be live across the call (see
/// [`service_of`]).
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

/// The state of service port `p` (`None` if `p` is NULL or not a
/// service).
///
/// # Safety
/// `p` must be NULL or a live port, and no other reference to its state
/// may be live while the result is: take it for one step, and fetch it
/// again after any call that may reach the port.
unsafe fn service_of<'a>(p: *mut CapsPort) -> Option<&'a mut Service> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    match unsafe { &mut (*p).kind } {
        Kind::Service(s) => Some(s),
        _ => None,
    }
}

/// The state of connection port `p`.
///
/// # Safety
/// As for [`service_of`]; `p` must be a live connection port (anything
/// else is fatal).
unsafe fn connection_of<'a>(p: *mut CapsPort) -> &'a mut Connection {
    // SAFETY: per the contract.
    match unsafe { &mut (*p).kind } {
        Kind::Connection(c) => c,
        _ => fatal!("libcaps", "port {p:p} is not a CAPS connection"),
    }
}

/// The state of client port `p`.
///
/// # Safety
/// As for [`service_of`]; `p` must be a live client port (anything else
/// is fatal).
unsafe fn client_of<'a>(p: *mut CapsPort) -> &'a mut Client {
    // SAFETY: per the contract.
    match unsafe { &mut (*p).kind } {
        Kind::Client(c) => c,
        _ => fatal!("libcaps", "port {p:p} is not a CAPS client port"),
    }
}

/// Free a port.
///
/// # Safety
/// `p` must come from [`mkport`], be unregistered from the event loop
/// and not be used afterwards.
unsafe fn free_port(p: *mut CapsPort) {
    // SAFETY: per the contract.
    drop(unsafe { Box::from_raw(p) });
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
                let remotes = {
                    let Some(s) = service_of(p) else {
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
                    std::mem::take(&mut s.remotes)
                };
                (*p).c.lfd = -1;
                (*p).c.flags |= CAPPF_SHUTDOWN;
                mp::wake_owner(&raw mut (*p).c.lport);
                for r in remotes {
                    remote_shutdown(r, None);
                }
                // requests received but never retrieved
                loop {
                    let m = mp::getport(&raw mut (*p).c.lport);
                    if m.is_null() {
                        break;
                    }
                    let r = (*req_head(m)).remote;
                    connection_of(r).held -= 1;
                    free_request(m);
                    release(r);
                }
                let Some(s) = service_of(p) else {
                    unreachable!()
                };
                if s.waiting {
                    // The owner frees it as it wakes (`service_waitport`).
                    s.closed = true;
                } else {
                    free_port(p);
                }
            }
            CAPT_REMOTE => {
                remote_shutdown(p, None);
            }
            CAPT_CLIENT => client_close(p),
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
