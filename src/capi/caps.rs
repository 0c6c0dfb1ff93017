//! `<sys/caps.h>`: CAPS v1 — named services between processes — and the
//! CAPS v2 calls `caps_sys_*` (the 2004 kernel API, done in userland).

use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use std::ffi::CStr;

use crate::abi::{
    CAPT_CLIENT, CAPT_REMOTE, CAPT_SERVICE, caps_cred, caps_gen_t, caps_msgid_t, caps_port_t,
    lwkt_msg_t, thread,
};
use crate::caps::errno::Errno;
use crate::caps::port::{self, CapsPort};
use crate::caps::sys;
use crate::warn;

fn set_errno(e: c_int) {
    // SAFETY: errno is thread-local and always writable.
    unsafe { *libc::__errno_location() = e };
}

/// The thread that will own new ports: the caller (adopting the calling
/// kernel thread as cpu 0's current thread if nothing did yet).
fn owner() -> *mut thread {
    // SAFETY: mycpu() is this kernel thread's live cpu.
    unsafe { (*crate::lwkt::mycpu()).gd_curthread }
}

/// Trace (`LIBCAPS_DEBUG`) a failed call that creates or connects to
/// service `name`: the lines before it name each path it tried.
fn trace_failure<T>(func: &str, name: &[u8], uid: u32, r: Result<T, Errno>) -> Result<T, Errno> {
    if let Err(e) = &r {
        crate::trace!(
            func,
            "\"{}\" (uid {}) failed in {}: {}",
            String::from_utf8_lossy(name),
            uid as i32,
            if func.starts_with("caps_sys") {
                crate::caps::rendezvous::sys_dir()
            } else {
                crate::caps::rendezvous::base_dir()
            }
            .display(),
            e
        );
    }
    r
}

/// The name argument as bytes, or `EINVAL`.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string.
unsafe fn name_arg<'a>(func: &str, name: *const c_char) -> Option<&'a [u8]> {
    if name.is_null() {
        warn!(func, "NULL service name");
        set_errno(libc::EINVAL);
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated per the contract.
    Some(unsafe { CStr::from_ptr(name) }.to_bytes())
}

/// Offer service `name`: creates the socket `BASE/root/NAME` (uid 0) or
/// `BASE/users/UID/NAME` (`BASE` = `$LIBCAPS_DIR` or `/var/caps`; a
/// missing per-user directory is created) with file mode `modes`.
/// `flags`: `CAPS_EXCL` fails with `EEXIST` while a live service answers
/// there; `CAPS_USER`, `CAPS_GROUP` (group `gid`, or the caller's with
/// `(gid_t)-1`) and `CAPS_WORLD` restrict which peers are accepted (see
/// docs/compat.md). Returns the service port, whose `lwkt_waitport(&port->
/// lport, NULL)` returns the next request; NULL with `errno` on failure.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_service(
    name: *const c_char,
    gid: libc::gid_t,
    modes: libc::mode_t,
    flags: c_int,
) -> caps_port_t {
    // SAFETY: the caller passes a C string or NULL.
    let Some(name) = (unsafe { name_arg("caps_service", name) }) else {
        return ptr::null_mut();
    };
    let uid = {
        // SAFETY: a plain id query.
        unsafe { libc::geteuid() }
    };
    match trace_failure(
        "caps_service",
        name,
        uid,
        port::service(name, gid, modes, flags, owner()),
    ) {
        Ok(p) => p.cast(),
        Err(e) => {
            set_errno(e.0);
            ptr::null_mut()
        }
    }
}

/// Connect to service `name` of user `uid` (`(uid_t)-1`: the caller's
/// own service, else root's). Returns the client port: send with
/// `lwkt_beginmsg`/`lwkt_domsg`/`lwkt_sendmsg` (each message needs
/// `sizeof(struct lwkt_msg) <= ms_msgsize <= ms_maxsize <= CAPMSG_MAXSIZE`),
/// collect replies with `caps_client_waitreply` or on the message's reply
/// port. NULL with `errno` on failure (`ENOENT`/`ECONNREFUSED`: no such
/// service, `EACCES`: refused by the service).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_client(
    name: *const c_char,
    uid: libc::uid_t,
    flags: c_int,
) -> caps_port_t {
    let _ = flags;
    // SAFETY: the caller passes a C string or NULL.
    let Some(name) = (unsafe { name_arg("caps_client", name) }) else {
        return ptr::null_mut();
    };
    match trace_failure("caps_client", name, uid, port::client(name, uid, owner())) {
        Ok(p) => p.cast(),
        Err(e) => {
            set_errno(e.0);
            ptr::null_mut()
        }
    }
}

/// Wait for the reply to `msg` sent on client `port` (`msg` NULL: any
/// reply) and return the message, its contents replaced by the reply.
/// Returns NULL when the connection failed (the message then holds
/// `ms_error = EIO`), with `errno = ENOTCONN` when another thread of the
/// cpu closed the port during the wait, or on bad arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_client_waitreply(port: caps_port_t, msg: lwkt_msg_t) -> *mut c_void {
    if port.is_null() {
        warn!("caps_client_waitreply", "NULL port");
        return ptr::null_mut();
    }
    // SAFETY: a non-NULL caps_port_t from caps_client().
    if unsafe { port::type_of(port) } != CAPT_CLIENT {
        warn!(
            "caps_client_waitreply",
            "port {port:p} is not a client port"
        );
        return ptr::null_mut();
    }
    // SAFETY: `port` is a live client port; `msg` NULL or the caller's.
    unsafe { crate::lwkt::msgport::waitport("caps_client_waitreply", &raw mut (*port).lport, msg) }
}

/// Close a CAPS port and free it. A service stops accepting, removes its
/// socket and drops its connections; a client's outstanding requests
/// complete with `EIO`. Do not use the port afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_close(port: caps_port_t) {
    if port.is_null() {
        warn!("caps_close", "NULL port");
        return;
    }
    // SAFETY: a non-NULL caps_port_t made by this library.
    unsafe {
        match port::type_of(port) {
            CAPT_SERVICE | CAPT_CLIENT | CAPT_REMOTE => port::close(port.cast::<CapsPort>()),
            t => warn!("caps_close", "port {port:p} has unknown type {t}"),
        }
    }
}

// ---- CAPS v2: caps_sys_* -------------------------------------------------

/// `Ok(v)` → `v`; `Err(e)` → `errno = e`, -1.
fn ret<T: From<i8>>(r: Result<T, Errno>) -> T {
    r.unwrap_or_else(|e| {
        set_errno(e.0);
        T::from(-1)
    })
}

/// The name argument of a `caps_sys_*` call, or `EINVAL` for NULL.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string.
unsafe fn sys_name<'a>(name: *const c_char) -> Result<&'a [u8], Errno> {
    if name.is_null() {
        return Err(Errno::EINVAL);
    }
    // SAFETY: non-NULL and NUL-terminated per the contract.
    Ok(unsafe { CStr::from_ptr(name) }.to_bytes())
}

/// A `(pointer, size)` argument as a slice: `EINVAL` for a negative size
/// or a NULL pointer with a non-zero size.
///
/// # Safety
/// A non-NULL `p` must be readable (and, for `mutable`, writable) for
/// `size` bytes and not be used elsewhere during the call.
unsafe fn buf_arg<'a>(p: *mut c_void, size: c_int) -> Result<&'a mut [u8], Errno> {
    if size < 0 || (p.is_null() && size > 0) {
        return Err(Errno::EINVAL);
    }
    if size == 0 {
        return Ok(&mut []);
    }
    // SAFETY: per the contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), size as usize) })
}

/// Register service `name` for `(uid, gid)` (either may be -1: not
/// registered under that search key) and return its port id (1, 2, ...
/// per process). Non-root callers may only give their own effective uid
/// and one of their groups (else `EPERM`). `flags` (low 16 bits kept):
/// `CAPF_EXCL` fails with `EEXIST` while a live matching service exists;
/// `CAPF_USER`/`CAPF_GROUP`/`CAPF_WORLD` say who may connect (a client
/// must ask for a flag the service gives). `upcid` is ignored. The
/// service is the socket `BASE/sys/NAME,UID,GID` (`BASE` = `$LIBCAPS_DIR`
/// or `/var/caps`). Errors: `EINVAL` (empty name or a character outside
/// `[0-9A-Za-z_.]`), `ENAMETOOLONG` (name of 64 bytes or more, or a path
/// longer than a socket address holds), `EPERM`, `EEXIST`. Usable without
/// `uthread_init()`; see docs/compat.md "CAPS v2".
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_sys_service(
    name: *const c_char,
    uid: libc::uid_t,
    gid: libc::gid_t,
    upcid: c_int,
    flags: c_int,
) -> c_int {
    let _ = upcid;
    // SAFETY: the caller passes a C string or NULL.
    ret(unsafe { sys_name(name) }
        .and_then(|n| trace_failure("caps_sys_service", n, uid, sys::service(n, uid, gid, flags))))
}

/// Connect to the service `name` registered for `(uid, gid)` (-1 matches
/// any) and return a new client port id. `flags`: the access the client
/// asks for (`CAPF_USER`, `CAPF_GROUP`, `CAPF_WORLD`; `EACCES` unless the
/// service grants one of them to the caller), `CAPF_WAITSVC` to sleep
/// until such a service appears (`EINTR` on a signal) instead of failing
/// with `ENOENT`, `CAPF_NOFORK` to not inherit the port across `fork()`.
/// The call waits (at most 30 s, then `ETIMEDOUT`) for the service to
/// answer, which it does while inside one of its `caps_sys_*` calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_sys_client(
    name: *const c_char,
    uid: libc::uid_t,
    gid: libc::gid_t,
    upcid: c_int,
    flags: c_int,
) -> c_int {
    let _ = upcid;
    // SAFETY: the caller passes a C string or NULL.
    ret(unsafe { sys_name(name) }
        .and_then(|n| trace_failure("caps_sys_client", n, uid, sys::client(n, uid, gid, flags))))
}

/// Close port `portid` (`EINVAL` if unknown). A service's clients get
/// empty replies to the requests it had not answered and `ENOTCONN`
/// afterwards; a client's requests the service holds come back to the
/// service as `CAPMS_DISPOSE` notices. The only call that works on a port
/// inherited across `fork()`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_sys_close(portid: c_int) -> c_int {
    ret(sys::close(portid).map(|()| 0))
}

/// Send `msgsize` bytes at `msg` as a request on client port `portid` and
/// return its message id (the `c_id` its reply will carry). The bytes are
/// copied before the call returns: the buffer is free at once. Errors:
/// `EINVAL` (unknown or service port, negative size), `EMSGSIZE` (over
/// 128 KiB), `ENOTCONN` (the service is gone, or a port inherited across
/// `fork()`), `ENOBUFS` (more than `CAPS_MAXINPROG` requests unanswered).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_sys_put(
    portid: c_int,
    msg: *mut c_void,
    msgsize: c_int,
) -> libc::off_t {
    // SAFETY: the caller passes a buffer of `msgsize` bytes; it is only read.
    let r = unsafe { buf_arg(msg, msgsize) }.and_then(|b| sys::put(portid, b));
    ret(r)
}

/// Reply `msgsize` bytes at `msg` (copied at once) to request `msgid`
/// that service port `portid` retrieved (or left queued because it was
/// larger than the caller's buffer). `EINVAL` for an unknown port or
/// msgid, `ENOTCONN` on a port inherited across `fork()`. Replying to a
/// client that went away succeeds and sends nothing (its `CAPMS_DISPOSE`
/// notice arrives anyway).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_sys_reply(
    portid: c_int,
    msg: *mut c_void,
    msgsize: c_int,
    msgid: libc::off_t,
) -> c_int {
    // SAFETY: the caller passes a buffer of `msgsize` bytes; it is only read.
    let r = unsafe { buf_arg(msg, msgsize) }.and_then(|b| sys::reply(portid, b, msgid));
    ret(r.map(|()| 0))
}

/// `caps_sys_get` and `caps_sys_wait`.
///
/// # Safety
/// As for those functions.
unsafe fn get_or_wait(
    portid: c_int,
    buf: *mut c_void,
    maxsize: c_int,
    msgid: caps_msgid_t,
    ccr: *mut caps_cred,
    block: bool,
) -> c_int {
    // SAFETY: the caller passes a writable buffer of `maxsize` bytes.
    let b = match unsafe { buf_arg(buf, maxsize) } {
        Ok(b) => b,
        Err(e) => return ret(Err(e)),
    };
    // SAFETY: NULL or the caller's writable caps_cred.
    let cred = unsafe { ccr.as_mut() };
    match sys::get(portid, b, cred, block) {
        Ok(g) => {
            // SAFETY: NULL or the caller's writable caps_msgid.
            if let Some(m) = unsafe { msgid.as_mut() } {
                m.c_id = g.id;
                m.c_state = g.state;
                m.c_reserved01 = 0;
            }
            g.size as c_int
        }
        Err(e) => ret(Err(e)),
    }
}

/// Take the next message of port `portid` without waiting (`EAGAIN`, the
/// same value as `EWOULDBLOCK`, when there is none). Copies at most
/// `maxsize` bytes into `buf` and returns the message's full size; a
/// message larger than `maxsize` stays queued (retry with a bigger
/// buffer; a server may also reply to it unread). Fills `*msgid` (`c_id`,
/// `c_state`) and `*ccr` (the sender's credentials) when not NULL.
/// A service sees `CAPMS_REQUEST` (reply with `caps_sys_reply`) and,
/// once the client has read the reply or went away, `CAPMS_DISPOSE` with
/// the same `c_id`; a client sees `CAPMS_REPLY` (`c_id` as returned by
/// `caps_sys_put`; empty if the service closed before replying).
/// `ENOTCONN`: a port inherited across `fork()`, or a client whose
/// service is gone and that has no reply left to read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_sys_get(
    portid: c_int,
    buf: *mut c_void,
    maxsize: c_int,
    msgid: caps_msgid_t,
    ccr: *mut caps_cred,
) -> c_int {
    // SAFETY: the caller's arguments, as documented.
    unsafe { get_or_wait(portid, buf, maxsize, msgid, ccr, false) }
}

/// `caps_sys_get`, but sleep until a message arrives; `EINTR` when a
/// signal interrupts the sleep. Blocks the calling kernel thread (every
/// LWKT thread on it, if called from one).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_sys_wait(
    portid: c_int,
    buf: *mut c_void,
    maxsize: c_int,
    msgid: caps_msgid_t,
    ccr: *mut caps_cred,
) -> c_int {
    // SAFETY: the caller's arguments, as documented.
    unsafe { get_or_wait(portid, buf, maxsize, msgid, ccr, true) }
}

/// Abort a request: not implemented, as in the 2004 kernel. Returns
/// `CAPS_ABORT_NOTIMPL` (0) for a known port, -1 with `EINVAL` otherwise.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_sys_abort(portid: c_int, msgid: libc::off_t, flags: c_int) -> c_int {
    let _ = (msgid, flags);
    ret(sys::abort(portid))
}

/// Set the generation number of service port `portid`; its clients read
/// it with `caps_sys_getgen`. `EINVAL` for a client or unknown port,
/// `ENOTCONN` on a port inherited across `fork()`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_sys_setgen(portid: c_int, generation: caps_gen_t) -> c_int {
    ret(sys::setgen(portid, generation).map(|()| 0))
}

/// The generation number of the service client port `portid` is
/// connected to (the last one it heard of). `EINVAL` for a service or
/// unknown port, `ENOTCONN` on a port inherited across `fork()`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_sys_getgen(portid: c_int) -> caps_gen_t {
    ret(sys::getgen(portid))
}
