//! A v1 client port: requests sent as frames, replies copied over the
//! client's original messages and completed through their reply ports.

use super::request::{msg_fill, msg_header};
use super::*;
use crate::abi::{EASYNC, MSGF_DONE, MSGF_QUEUED, MSGF_REPLY, lwkt_port};
use crate::caps::conn::{ReadEnd, client_dropped};
use crate::caps::wire::{FrameKind, Header, WireError};
use crate::warn;
use xcpu::{client_put_elsewhere, reply_elsewhere, reply_port_is_local};

/// Mark a call under way on client port `p` that may run the
/// application's reply vectors, which may `caps_close` the port: the
/// port then stays allocated until the matching [`release_hold`].
///
/// # Safety
/// `p` must be a live client port.
unsafe fn hold(p: *mut CapsPort) {
    // SAFETY: per the contract; the reference ends with the statement.
    unsafe { client_of(p).holds += 1 };
}

/// End a [`hold`] of `p`: the last one frees a port closed meanwhile
/// (nothing may use it any more).
///
/// # Safety
/// `p` must be a client port held by the caller.
unsafe fn release_hold(p: *mut CapsPort) {
    // SAFETY: per the contract, `p` is still allocated; the reference
    // ends before the port is freed.
    unsafe {
        let free = {
            let cl = client_of(p);
            cl.holds -= 1;
            cl.holds == 0 && cl.closed
        };
        if free {
            free_port(p);
        }
    }
}

/// `caps_close` of client port `p`: shut it down (its outstanding
/// requests complete with `EIO`) and free it, at once unless a call of
/// this module holds it (the close came from a reply vector that call
/// ran, or from another thread of the cpu while the owner waits in
/// [`client_waitport`]): then the last such call frees it. (The
/// shutdown holds the port while it runs the reply vectors: the end of
/// its hold is what frees it.)
///
/// # Safety
/// `p` must be a live client port of the current cpu, not closed yet.
pub(super) unsafe fn client_close(p: *mut CapsPort) {
    // SAFETY: per the contract.
    unsafe {
        client_of(p).closed = true;
        client_shutdown(p, None);
    }
}

/// Readiness of a client connection: replies.
///
/// # Safety
/// `p` must be a live client port of the current cpu.
pub(super) unsafe fn client_event(p: *mut CapsPort, bits: u32) {
    // SAFETY: per the contract; a reply vector that closes `p` leaves it
    // allocated until the hold ends.
    unsafe {
        hold(p);
        client_event_held(p, bits);
        release_hold(p);
    }
}

/// [`client_event`] of a port it holds.
///
/// # Safety
/// As [`client_event`], and `p` is held.
unsafe fn client_event_held(p: *mut CapsPort, bits: u32) {
    // SAFETY: `p` is live; the reference ends with the block.
    let ready = unsafe {
        let cl = client_of(p);
        if cl.conn.dead {
            return;
        }
        cl.conn.ready(bits)
    };
    if let Err(e) = ready {
        // SAFETY: `p` is live.
        unsafe { client_shutdown(p, Some(&ReadEnd::Errno(e))) };
        return;
    }
    loop {
        // SAFETY: `p` is live; the reference ends with the statement
        // (completing a reply runs the application's reply port).
        let next = unsafe { client_of(p) }.conn.next_frame();
        let end = match next {
            Ok(None) => return,
            // SAFETY: `p` is live.
            Ok(Some((h, body))) => match unsafe { deliver_reply(p, &h, body) } {
                // SAFETY: `p` is held, so still allocated (a reply vector
                // may have closed it: then read nothing more).
                Ok(()) if unsafe { client_of(p) }.closed => return,
                Ok(()) => continue,
                Err(w) => ReadEnd::Protocol(w),
            },
            Err(end) => end,
        };
        // SAFETY: `p` is live.
        unsafe { client_shutdown(p, Some(&end)) };
        return;
    }
}

/// Copy a reply over the client's original message and complete it
/// through the message's reply port. The payload's buffer goes back to
/// the connection for the next frame it reads (not a malloc and a free
/// per round trip; one more than the requests still outstanding is
/// kept, so a quiet connection holds one at most), before the reply
/// port runs (it may close the port).
///
/// # Safety
/// `p` must be a live client port of the current cpu.
unsafe fn deliver_reply(p: *mut CapsPort, h: &Header, body: Vec<u8>) -> Result<(), WireError> {
    if h.kind != FrameKind::Reply {
        return Err(WireError::BadKind(h.kind as u16));
    }
    // SAFETY: `p` is live; the reference ends with the block.
    let msg = unsafe {
        let cl = client_of(p);
        let Some(pend) = cl.outstanding.remove(&h.id) else {
            return Err(WireError::BadField("reply id", h.id));
        };
        if body.len() > pend.capacity {
            cl.outstanding.insert(h.id, pend);
            return Err(WireError::TooLarge(body.len() as u64));
        }
        if cl.outstanding.is_empty() && cl.outstanding.capacity() > QUIET_KEEP {
            // A burst is over: the map's room goes with it.
            cl.outstanding = IdMap::default();
        }
        pend.msg
    };
    // SAFETY: the client keeps `msg` alive while its request is
    // outstanding; it has room for MSG_HDR + capacity bytes. `p` is live;
    // the reference to its client ends with its block, before the
    // reply port runs.
    unsafe {
        msg_fill(msg, h, &body);
        (*msg).ms_error = h.error;
        {
            let cl = client_of(p);
            cl.conn.recycle_upto(body, cl.outstanding.len() + 1);
        }
        complete(p, msg);
    }
    Ok(())
}

/// Hand a finished message back through its reply port and remember it
/// for `caps_client_waitreply(port, NULL)`.
///
/// # Safety
/// `p` must be a live client port of the current cpu; `msg` one of its
/// requests, live.
unsafe fn complete(p: *mut CapsPort, msg: *mut lwkt_msg) {
    // SAFETY: `msg` is live (see deliver_reply); its reply port, if any,
    // is a valid port of the application. The client's state is not
    // referenced while the application's reply vector runs.
    unsafe {
        let rport = (*msg).ms_reply_port;
        if reply_port_is_local(rport) {
            let cl = client_of(p);
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
/// with `EIO` through its reply port. `p` may be freed on return (a
/// reply vector closed it): the caller uses it no more.
///
/// # Safety
/// `p` must be a live client port of the current cpu.
pub(super) unsafe fn client_shutdown(p: *mut CapsPort, why: Option<&ReadEnd>) {
    // SAFETY: per the contract; held, `p` stays allocated while the
    // reply vectors run.
    unsafe {
        hold(p);
        client_shutdown_held(p, why);
        release_hold(p);
    }
}

/// [`client_shutdown`] of a port it holds.
///
/// # Safety
/// As [`client_shutdown`], and `p` is held.
unsafe fn client_shutdown_held(p: *mut CapsPort, why: Option<&ReadEnd>) {
    // SAFETY: `p` is live; the reference ends with the block.
    let mut pending: Vec<(u64, Pending)> = unsafe {
        let cl = client_of(p);
        if cl.conn.dead {
            return;
        }
        if let Some(why) = why {
            client_dropped("caps_client", why);
        }
        cl.conn.close();
        (*p).c.cfd = -1;
        (*p).c.flags |= CAPPF_SHUTDOWN;
        cl.outstanding.drain().collect()
    };
    pending.sort_by_key(|(id, _)| *id);
    for (_, pend) in pending {
        // SAFETY: outstanding messages are live (the client keeps them).
        unsafe {
            (*pend.msg).ms_error = Errno::EIO.0;
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

/// The client sends a request: `EASYNC`, or an error at once.
///
/// # Safety
/// Called only through the vectors of a CAPS port (a client): `port` is
/// that live port, `msg` the caller's live message.
pub(super) unsafe extern "C" fn client_putport(port: *mut lwkt_port, msg: *mut lwkt_msg) -> i32 {
    let p = port.cast::<CapsPort>();
    // SAFETY: `p` is a live client port (vector contract).
    if unsafe { inherited(p, Some("lwkt_beginmsg")) } {
        return Errno::ENOTCONN.0;
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
            return Errno::EINVAL.0;
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
pub(super) unsafe fn client_send(p: *mut CapsPort, msg: *mut lwkt_msg) -> i32 {
    // SAFETY: per the contract; the reference to the client's state
    // ends before a shutdown completes its requests.
    unsafe {
        let (size, max) = ((*msg).ms_msgsize, (*msg).ms_maxsize);
        let cl = client_of(p);
        // Not done, even when it fails at once: `lwkt_initmsg` marked it
        // done, and `caps_client_waitreply` would hand it back as answered.
        (*msg).ms_flags &= !(MSGF_DONE | MSGF_REPLY | MSGF_QUEUED);
        if cl.conn.dead {
            return Errno::EIO.0;
        }
        let id = cl.next_id;
        cl.next_id += 1;
        let body_len = size as usize - MSG_HDR;
        let h = Header {
            capacity: (max as usize - MSG_HDR) as u32,
            ..msg_header(msg, FrameKind::Request, id, body_len)
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
///
/// # Safety
/// Called only through the vectors of a CAPS port (a client): `port` is
/// that live port, `msg` NULL or the caller's live message.
pub(super) unsafe extern "C" fn client_waitport(
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
    // SAFETY: `p` is live; held while this thread waits, it stays
    // allocated if another thread of this cpu closes it meanwhile.
    let (r, closed) = unsafe {
        hold(p);
        let r = wait_held(p, msg);
        let closed = client_of(p).closed;
        release_hold(p);
        (r, closed)
    };
    if closed && r.is_null() {
        // Set after the port is freed (which may call into libc).
        // SAFETY: `__errno_location` returns this thread's errno.
        unsafe { *libc::__errno_location() = Errno::ENOTCONN.0 };
    }
    r
}

/// [`client_waitport`] of a port of the current cpu it holds.
///
/// # Safety
/// As [`client_waitport`], and `p` is held.
unsafe fn wait_held(p: *mut CapsPort, msg: *mut lwkt_msg) -> *mut libc::c_void {
    loop {
        // SAFETY: `p` is held, so allocated. `msg` (when given) is the
        // caller's live message; messages in `completed` were completed by
        // us and belong to the caller. The reference to the client's state
        // ends before the thread blocks (others run then).
        unsafe {
            let cl = client_of(p);
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
                    return no_reply(p, cl);
                }
                return m.cast();
            }
            if cl.conn.dead {
                return no_reply(p, cl);
            }
            let port = &raw mut (*p).c.lport;
            mp::check_owner("caps_client_waitreply", port);
            mp::block_on_port("caps_client_waitreply", port);
        }
    }
}

/// `caps_client_waitreply`'s NULL: no reply will come on `p`'s dead
/// connection. A port closed meanwhile (by another thread of its cpu,
/// while this one waited) says so in a line ([`client_waitport`] sets
/// `errno` to `ENOTCONN` once it let the port go).
fn no_reply(p: *mut CapsPort, cl: &Client) -> *mut libc::c_void {
    if cl.closed {
        warn!(
            "caps_client_waitreply",
            "CAPS client port {p:p} was closed while its owner waited on it: no reply will come (ENOTCONN)"
        );
    }
    ptr::null_mut()
}

/// A completed message may sit on its reply port's queue (asynchronous
/// reply); the caller of waitreply takes it from there.
///
/// # Safety
/// `m` must be a live message whose reply port, if any, is valid.
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
///
/// # Safety
/// Called only through the vectors of a CAPS port (a client): `port` is
/// that live port, `msg` a live message whose reply port it is.
pub(super) unsafe extern "C" fn client_replyport(port: *mut lwkt_port, msg: *mut lwkt_msg) {
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
