//! `<sys/caps.h>`: CAPS v1 — named services between processes.

use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use std::ffi::CStr;

use crate::abi::{CAPT_CLIENT, CAPT_REMOTE, CAPT_SERVICE, caps_port_t, lwkt_msg_t, thread};
use crate::caps::port::{self, CapsPort};
use crate::warn;

fn set_errno(e: c_int) {
    // SAFETY: errno is thread-local and always writable.
    unsafe { *libc::__errno_location() = e };
}

/// The thread that will own new ports: the caller (adopting the calling
/// kernel thread as cpu 0's current thread if nothing did yet).
fn owner() -> *mut thread {
    // SAFETY: mycpu() is this kernel thread's live cpu.
    unsafe { (*crate::cpu::mycpu()).gd_curthread }
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
    match port::service(name, gid, modes, flags, owner()) {
        Ok(p) => p.cast(),
        Err(e) => {
            set_errno(e);
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
    match port::client(name, uid, owner()) {
        Ok(p) => p.cast(),
        Err(e) => {
            set_errno(e);
            ptr::null_mut()
        }
    }
}

/// Wait for the reply to `msg` sent on client `port` (`msg` NULL: any
/// reply) and return the message, its contents replaced by the reply.
/// Returns NULL when the connection failed (the message then holds
/// `ms_error = EIO`) or on bad arguments.
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
