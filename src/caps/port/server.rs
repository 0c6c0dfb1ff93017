//! A v1 service's side of its connections (`CAPT_REMOTE` ports): accept,
//! hello and admission through the connection layer, requests turned
//! into messages on the service port, replies sent back.

use super::request::{
    HIDDEN, REQ_MAGIC, alloc_request, free_request, msg_fill, msg_header, req_head,
};
use super::*;
use crate::abi::lwkt_port;
use crate::caps::conn::uring::{Bells, Rung};
use crate::caps::conn::{Admission, EV_OUT, HELLO_DEADLINE, QUIET, ReadEnd, TURN};
use crate::caps::wire::{FrameKind, Header, WireError};
use crate::warn;
use guard::{account, listed, may_read};
use xcpu::reply_elsewhere;

/// Accept every pending connection on a service.
///
/// # Safety
/// `svc` must be a live service port of the current cpu.
pub(super) unsafe fn accept_all(svc: *mut CapsPort) {
    loop {
        // SAFETY: `svc` is live; its listen descriptor is open.
        let (lfd, td) = unsafe { ((*svc).c.lfd, (*svc).c.lport.mp_td) };
        // SAFETY: `svc` is live; the reference ends with the statement.
        let accepted = unsafe { service_of(svc) }.map(|s| (s.core.accept(lfd), s.name.clone()));
        let Some((Some(link), name)) = accepted else {
            return;
        };
        let raw = link.tx.raw();
        let cred = link.peer.clone();
        let c = Connection {
            link,
            service: svc,
            service_name: name,
            dirty: false,
            held: 0,
            ids: IdSet::default(),
            paused: false,
            held_bytes: 0,
        };
        let r = mkport(CAPT_REMOTE, td, Kind::Connection(c));
        // SAFETY: `r` and `svc` are live; `r` unregisters when shut down.
        unsafe {
            (*r).c.cfd = raw;
            (*r).c.server = &raw mut (*svc).c;
            cred.to_c(&mut (*r).c.cred);
            match watch(r, raw, EV_IN) {
                Ok(t) => {
                    connection_of(r).link.tx.token = Some(t);
                    if let Some(s) = service_of(svc) {
                        s.remotes.push(r);
                        if let Some(t) = s.timer.as_mut()
                            && t.at.is_none()
                        {
                            t.arm(Some(std::time::Instant::now() + HELLO_DEADLINE));
                        }
                    }
                }
                Err(_) => {
                    if let Some(s) = service_of(svc) {
                        s.core.ended(&mut connection_of(r).link, None);
                    }
                    free_port(r);
                }
            }
        }
    }
}

/// Readiness of the service's side of a connection.
///
/// # Safety
/// `r` must be a live connection port of the current cpu.
pub(super) unsafe fn remote_event(r: *mut CapsPort, bits: u32) {
    // SAFETY: `r` is live; the reference ends with the block.
    let (ready, svc) = unsafe {
        let c = connection_of(r);
        if c.link.tx.dead {
            return;
        }
        (c.link.tx.ready(bits), c.service)
    };
    if let Err(e) = ready {
        // SAFETY: `r` is live.
        unsafe { remote_shutdown(r, Some(&ReadEnd::Errno(e))) };
        return;
    }
    if bits & EV_OUT != 0 {
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

/// Connection `r` read all there was: if its rings are in use and its
/// service's sweep is not armed, arm it for `QUIET` from now (it gives a
/// quiet connection's pages back; `guard::hello_sweep`).
///
/// # Safety
/// `r` must be a live connection port. The references end with the block.
unsafe fn arm_quiet_sweep(r: *mut CapsPort) {
    // SAFETY: `r` is live, so is its service (another object).
    unsafe {
        let c = connection_of(r);
        if !c.link.tx.ring_awake() {
            return;
        }
        if let Some(s) = service_of(c.service)
            && let Some(t) = s.timer.as_mut()
            && t.at.is_none()
        {
            t.arm(Some(std::time::Instant::now() + QUIET));
        }
    }
}

/// Read the hello, then requests, from a connection while the server
/// can take them.
///
/// # Safety
/// `r` must be a live connection port of the current cpu.
pub(super) unsafe fn remote_read(r: *mut CapsPort) {
    // SAFETY: `r` is live; a live connection's service is live (it
    // shuts its connections down before it is freed). The references
    // end with the block.
    let admission = unsafe {
        let c = connection_of(r);
        match service_of(c.service) {
            None => return,
            Some(s) => {
                let access = &s.access;
                s.core
                    .admit(&mut c.link, |_, peer| access.admits(peer), |_| {})
            }
        }
    };
    match admission {
        Admission::Waiting => return,
        Admission::Closed => {
            // SAFETY: `r` is live.
            unsafe { remote_shutdown(r, None) };
            return;
        }
        Admission::Admitted => {}
    }
    let mut taken = 0;
    loop {
        if taken == TURN {
            // The others' turn, if any other has input: read on after
            // them. Alone, read on (splitting its turns cost a lone
            // client pipelining 64 requests 18% more cpu per request on
            // one core; docs/benchmarks-history.md), and ask again after another turn.
            taken = 0;
            // SAFETY: `r` is live.
            if let Some(t) = unsafe { connection_of(r) }.link.tx.token
                && evloop::others_waiting(t)
            {
                evloop::again(t);
                return;
            }
        }
        // SAFETY: `r` is live.
        if !unsafe { may_read(r) } {
            // SAFETY: `r` is live; its service, if any, too. Each
            // reference ends with its statement.
            unsafe {
                let c = connection_of(r);
                c.link.tx.pause();
                if !c.paused {
                    c.paused = true;
                    let svc = c.service;
                    if let Some(s) = service_of(svc) {
                        s.paused.push(r);
                    }
                }
            }
            return;
        }
        // SAFETY: `r` is live, and so is its service (another object);
        // the references end with the block.
        let next = unsafe {
            let c = connection_of(r);
            match service_of(c.service) {
                Some(s) => c.link.next_frame(&mut s.core),
                None => return,
            }
        };
        let end = match next {
            // It answered its bound of pings and stats: the rest (in its
            // buffer, maybe, where no poll sees it) at the next look,
            // alone or not, as a v2 service does. Read on alone, a peer
            // sending them as fast as it reads the answers kept the cpu
            // on its connection: pings, unlike requests, are not bounded
            // by a budget.
            // SAFETY: `r` is live.
            Ok(None) if unsafe { connection_of(r) }.link.turn_cut() => {
                // SAFETY: `r` is live.
                if let Some(t) = unsafe { connection_of(r) }.link.tx.token {
                    evloop::again(t);
                    return;
                }
                taken = TURN;
                continue;
            }
            Ok(None) => {
                // SAFETY: `r` is live.
                unsafe { arm_quiet_sweep(r) };
                return;
            }
            Ok(Some((h, body))) if h.kind == FrameKind::Request => {
                // SAFETY: `r` is live.
                if unsafe { connection_of(r) }.ids.insert(h.id) {
                    // SAFETY: `r` is live.
                    unsafe { deliver_request(r, &h, &body) };
                    // Its buffer serves the next frame read (not a malloc
                    // and a free per request).
                    // SAFETY: `r` is live (delivering only queued the
                    // message on the service port).
                    unsafe { connection_of(r) }.link.tx.recycle(body);
                    taken += 1;
                    continue;
                }
                ReadEnd::Protocol(WireError::BadField("request id (still outstanding)", h.id))
            }
            Ok(Some(_)) => ReadEnd::Protocol(WireError::BadKind(FrameKind::Reply as u16)),
            Err(end) => end,
        };
        // SAFETY: `r` is live.
        unsafe { remote_shutdown(r, Some(&end)) };
        return;
    }
}

/// Turn a request frame into a message on the service port.
///
/// # Safety
/// `r` must be a live connection port of the current cpu.
unsafe fn deliver_request(r: *mut CapsPort, h: &Header, body: &[u8]) {
    // SAFETY: `r` is live.
    let svc = unsafe { connection_of(r) }.service;
    if svc.is_null() {
        return;
    }
    let msg = alloc_request(r, h.id, h.capacity as usize);
    // SAFETY: `msg` has room for MSG_HDR + capacity >= MSG_HDR + body bytes;
    // `r` and its service are live.
    unsafe {
        msg_fill(msg, h, body);
        (*msg).ms_maxsize = (MSG_HDR + h.capacity as usize) as i32;
        (*msg).ms_reply_port = &raw mut (*r).c.lport;
        {
            let c = connection_of(r);
            c.held += 1;
            c.held_bytes += (*req_head(msg)).size;
        }
        (*r).c.lport.mp_refs += 1;
        let svc_port = &raw mut (*svc).c.lport;
        (*msg).ms_target_port = svc_port;
        mp::default_putport(svc_port, msg);
        account(r);
    }
}

/// Write the queued replies of every connection on `svc`'s dirty list.
///
/// # Safety
/// `svc` must be a live service port of the current cpu.
pub(super) unsafe fn flush_dirty(svc: *mut CapsPort) {
    // SAFETY: `svc` is live; the reference ends with the statement.
    let dirty = match unsafe { service_of(svc) } {
        Some(s) => std::mem::take(&mut s.dirty),
        None => return,
    };
    // The doorbells of the pass are rung together (one io_uring_enter
    // per 16), after every connection's frames are in its ring and
    // before the cpu takes its next request or sleeps.
    let mut bells = Bells::new();
    // SAFETY: listed remotes are live (shutdown takes them off the list).
    unsafe {
        for r in dirty {
            if !listed(svc, r) {
                continue;
            }
            let flushed = {
                let c = connection_of(r);
                c.dirty = false;
                c.link.tx.flush_into(&mut bells, r as usize)
            };
            match flushed {
                Err(e) => remote_shutdown(r, Some(&ReadEnd::Errno(e))),
                Ok(()) => account(r),
            }
        }
    }
    // A connection shut down since its doorbell was taken (a paused one
    // read again by `account`, or by an earlier `bell_rung`) closed its
    // socket, whose number another thread may hold by now: only a
    // listed connection's own socket is rung.
    let still = |key: usize, fd: i32| {
        let r = key as *mut CapsPort;
        // SAFETY: a listed connection is live.
        unsafe { listed(svc, r) && connection_of(r).link.tx.raw() == fd }
    };
    bells.ring(still, |key, rung| {
        let r = key as *mut CapsPort;
        // SAFETY: a connection still listed is live (one shut down since
        // its doorbell was taken is off the list and not touched).
        unsafe {
            if rung == Rung::Sent || !listed(svc, r) {
                return;
            }
            let rang = connection_of(r).link.tx.bell_rung(rung);
            match rang {
                Err(e) => remote_shutdown(r, Some(&ReadEnd::Errno(e))),
                Ok(()) => account(r),
            }
        }
    });
}

/// Shut down the service's side of a connection. Requests it still
/// holds keep the port alive until they are replied.
///
/// # Safety
/// `r` must be a live connection port of the current cpu.
pub(super) unsafe fn remote_shutdown(r: *mut CapsPort, why: Option<&ReadEnd>) {
    // SAFETY: `r` is live; its service (if any) is live and another
    // object. The references end with the block.
    unsafe {
        let c = connection_of(r);
        if c.link.tx.dead {
            return;
        }
        let svc = std::mem::replace(&mut c.service, ptr::null_mut());
        c.dirty = false;
        match service_of(svc) {
            Some(s) => {
                s.core.ended(&mut c.link, why);
                s.remotes.retain(|&x| x != r);
                // A service that shed most of its connections gives the
                // list's room back.
                if s.remotes.capacity() > 64 && s.remotes.len() * 4 < s.remotes.capacity() {
                    s.remotes.shrink_to(s.remotes.len() * 2);
                }
                s.dirty.retain(|&x| x != r);
                s.paused.retain(|&x| x != r);
            }
            // Shut down before (and its service gone since).
            None => c.link.tx.close(),
        }
        (*r).c.cfd = -1;
        (*r).c.flags |= CAPPF_SHUTDOWN;
        release(r);
    }
}

/// Drop one reference of a connection port; free it at zero.
///
/// # Safety
/// `r` must be a live connection port; it may be freed.
pub(super) unsafe fn release(r: *mut CapsPort) {
    // SAFETY: `r` is live until its last reference goes.
    unsafe {
        (*r).c.lport.mp_refs -= 1;
        if (*r).c.lport.mp_refs <= 0 {
            free_port(r);
        }
    }
}

// ---- port vectors --------------------------------------------------------

/// # Safety
/// Called only through the vectors of a CAPS port (a service): `port` is
/// that live port, `msg` any message (not touched).
pub(super) unsafe extern "C" fn service_putport(_port: *mut lwkt_port, _msg: *mut lwkt_msg) -> i32 {
    Errno::EINVAL.0
}

/// Next request from any connection; NULL for a specific message or once
/// the service is closed.
///
/// # Safety
/// Called only through the vectors of a CAPS port (a service): `port` is
/// that live port, `msg` NULL or a live message.
pub(super) unsafe extern "C" fn service_waitport(
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
            set_waiting(p, true);
            mp::block_on_port("lwkt_waitport", port);
            set_waiting(p, false);
            if service_of(p).is_some_and(|s| s.closed) {
                warn!(
                    "lwkt_waitport",
                    "CAPS service port {p:p} was closed while its owner waited on it (ENOTCONN)"
                );
                free_port(p);
                // SAFETY: `__errno_location` returns this thread's errno.
                *libc::__errno_location() = Errno::ENOTCONN.0;
                return ptr::null_mut();
            }
        }
    }
}

/// Mark service port `p`'s owner as blocked on it (or no longer).
///
/// # Safety
/// `p` must be a live service port.
unsafe fn set_waiting(p: *mut CapsPort, on: bool) {
    // SAFETY: per the contract; the reference ends with the statement.
    if let Some(s) = unsafe { service_of(p) } {
        s.waiting = on;
    }
}

/// # Safety
/// Called only through the vectors of a CAPS port (a service): `port` is
/// that live port, `msg` any message (not touched).
pub(super) unsafe extern "C" fn service_replyport(port: *mut lwkt_port, msg: *mut lwkt_msg) {
    fatal!(
        "lwkt_replymsg",
        "message {msg:p} has service port {port:p} as its reply port"
    )
}

/// # Safety
/// Called only through the vectors of a CAPS port (a connection): `port` is
/// that live port, `msg` any message (not touched).
pub(super) unsafe extern "C" fn remote_putport(_port: *mut lwkt_port, _msg: *mut lwkt_msg) -> i32 {
    Errno::EINVAL.0
}

/// # Safety
/// Called only through the vectors of a CAPS port (a connection): `port` is
/// that live port, `msg` any message (not touched).
pub(super) unsafe extern "C" fn remote_waitport(
    port: *mut lwkt_port,
    _msg: *mut lwkt_msg,
) -> *mut libc::c_void {
    fatal!(
        "lwkt_waitport",
        "port {port:p} is a CAPS connection: wait on its service port"
    )
}

/// The server replies: send the message back, free it.
///
/// # Safety
/// Called only through the vectors of a CAPS port (a connection): `port` is
/// that live port, `msg` a live message whose reply port it is.
pub(super) unsafe extern "C" fn remote_replyport(port: *mut lwkt_port, msg: *mut lwkt_msg) {
    let r = port.cast::<CapsPort>();
    // SAFETY: `msg` was delivered by `deliver_request` (checked through
    // the hidden header's magic and owner before anything else is used);
    // `r` is live while the request holds its reference. Each reference
    // to the connection's state lasts one step.
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
        let (id, size) = ((*head).id, (*head).size);
        {
            let c = connection_of(r);
            c.held -= 1;
            c.held_bytes -= size;
            c.ids.remove(&id);
            // A burst is over: the set's room goes with it.
            if c.ids.is_empty() && c.ids.capacity() > QUIET_KEEP {
                c.ids = IdSet::default();
            }
        }
        if inherited(r, None) {
            // Received by the parent: its reply is the parent's to send.
            free_request(msg);
            release(r);
            return;
        }
        if !connection_of(r).link.tx.dead {
            send_reply(r, msg, id, size - HIDDEN);
        }
        free_request(msg);
        // Less buffered now: this or another paused connection may be
        // read again.
        account(r);
        release(r);
    }
}

/// Queue the reply `msg` to request `id` (a buffer of `max` bytes) on
/// connection `r`, and write it now or with the next batch.
///
/// # Safety
/// `r` must be a live connection port of the current cpu whose
/// connection is not dead; `msg` a request buffer of it.
unsafe fn send_reply(r: *mut CapsPort, msg: *mut lwkt_msg, id: u64, max: usize) {
    // SAFETY: per the contract; each reference to the connection's
    // state lasts one step.
    unsafe {
        let size = (*msg).ms_msgsize as usize;
        let (error, body_len) = if (MSG_HDR..=max).contains(&size) {
            ((*msg).ms_error, size - MSG_HDR)
        } else {
            warn!(
                "lwkt_replymsg",
                "{}: reply size {size} outside {MSG_HDR}..={max}: sent as EMSGSIZE",
                connection_of(r).service_name
            );
            (Errno::EMSGSIZE.0, 0)
        };
        let h = Header {
            error,
            ..msg_header(msg, FrameKind::Reply, id, body_len)
        };
        let body = std::slice::from_raw_parts(msg.cast::<u8>().add(MSG_HDR), body_len);
        let (svc, queued) = {
            let c = connection_of(r);
            c.link
                .send(service_of(c.service).map(|s| &mut s.core), &h, body);
            (c.service, c.link.tx.queued())
        };
        let more_at_hand =
            !svc.is_null() && !queue::first(&raw const (*svc).c.lport.mp_msgq).is_null();
        if more_at_hand && queued < FLUSH_AT {
            // The server will take its next request without blocking:
            // let replies accumulate and write them in one go.
            let c = connection_of(r);
            if !c.dirty {
                c.dirty = true;
                if let Some(s) = service_of(svc) {
                    s.dirty.push(r);
                }
            }
            return;
        }
        if !svc.is_null() {
            flush_dirty(svc);
        }
        if let Err(e) = connection_of(r).link.tx.flush() {
            remote_shutdown(r, Some(&ReadEnd::Errno(e)));
        }
    }
}
