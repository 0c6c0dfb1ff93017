//! `<sys/msgport.h>` and `<sys/msgport2.h>`.
//!
//! The `msgport2.h` helpers (`lwkt_initmsg`, `lwkt_beginmsg`, ...) are
//! `static inline` in the header, as in DragonFly; they are also exported
//! here so that code which does not include `msgport2.h` (or takes their
//! address) links.

use core::ffi::{c_int, c_void};

use crate::abi::{lwkt_msg_t, lwkt_port_t, thread};
use crate::lwkt::arch::blocking_entry;
use crate::lwkt::msgport as core_mp;
use crate::{fatal, warn};

/// Report a NULL required argument and return `EINVAL` from `func`.
fn einval(func: &str, what: &str) -> c_int {
    warn!(func, "NULL {what}");
    libc::EINVAL
}

/// Initialise a message port owned by thread `td`: empty queue, no flags,
/// the four default vectors. `td` may be NULL for a port nobody waits on.
///
/// Context: any. Aborts if `port` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_initport(port: lwkt_port_t, td: *mut thread) {
    if port.is_null() {
        fatal!("lwkt_initport", "NULL port");
    }
    // SAFETY: `port` is non-NULL and the C caller owns its memory.
    unsafe { core_mp::initport(port, td, &core_mp::DEFAULT_VECTORS) }
}

/// Prepare `msg` for sending: command `cmd`, flags `MSGF_DONE`, replies to
/// `rport`, `ms_msgsize` and `ms_maxsize` zero. Also a `static inline` in
/// `<sys/msgport2.h>`.
///
/// Aborts if `msg` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_initmsg(msg: lwkt_msg_t, rport: lwkt_port_t, cmd: c_int) {
    if msg.is_null() {
        fatal!("lwkt_initmsg", "NULL message");
    }
    // SAFETY: `msg` is non-NULL and owned by the caller.
    unsafe { core_mp::initmsg(msg, rport, cmd) }
}

/// Re-arm a message for another send: keep `MSGF_ASYNC`, set `MSGF_DONE`,
/// replies to `rport`. Aborts if `msg` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_reinitmsg(msg: lwkt_msg_t, rport: lwkt_port_t) {
    if msg.is_null() {
        fatal!("lwkt_reinitmsg", "NULL message");
    }
    // SAFETY: `msg` is non-NULL and owned by the caller.
    unsafe { core_mp::reinitmsg(msg, rport) }
}

/// Hand `msg` to `port` (its `mp_putport`). Returns `EASYNC` if the port
/// queued it (wait with `lwkt_waitmsg`), else the synchronous result.
/// Returns `EINVAL` for a NULL port or message.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_beginmsg(port: lwkt_port_t, msg: lwkt_msg_t) -> c_int {
    if port.is_null() {
        return einval("lwkt_beginmsg", "port");
    }
    if msg.is_null() {
        return einval("lwkt_beginmsg", "message");
    }
    // SAFETY: both pointers are non-NULL C objects owned by the caller.
    unsafe { core_mp::beginmsg("lwkt_beginmsg", port, msg) }
}

/// Pass a received message on to another port. Same results as
/// `lwkt_beginmsg`; `EINVAL` for a NULL port or message.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_forwardmsg(port: lwkt_port_t, msg: lwkt_msg_t) -> c_int {
    if port.is_null() {
        return einval("lwkt_forwardmsg", "port");
    }
    if msg.is_null() {
        return einval("lwkt_forwardmsg", "message");
    }
    // SAFETY: both pointers are non-NULL C objects owned by the caller.
    unsafe { core_mp::beginmsg("lwkt_forwardmsg", port, msg) }
}

/// Send asynchronously: the message always ends up replied to its reply
/// port, even when the target completed it synchronously. The message
/// must have a reply port. Aborts on a NULL port or message.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_sendmsg(port: lwkt_port_t, msg: lwkt_msg_t) {
    if port.is_null() {
        fatal!("lwkt_sendmsg", "NULL port");
    }
    if msg.is_null() {
        fatal!("lwkt_sendmsg", "NULL message");
    }
    // SAFETY: both pointers are non-NULL C objects owned by the caller.
    unsafe { core_mp::sendmsg(port, msg) }
}

/// Send synchronously and wait for the reply; returns the message's final
/// error. Returns `EINVAL` for a NULL port or message.
///
/// Context: may block the calling thread (other threads keep running).
#[unsafe(no_mangle)]
#[unsafe(naked)]
pub unsafe extern "C" fn lwkt_domsg(port: lwkt_port_t, msg: lwkt_msg_t) -> c_int {
    blocking_entry!(domsg_body)
}

/// The body of [`lwkt_domsg`] (which returns through the gate of
/// `lwkt::arch`).
///
/// # Safety
/// As `lwkt_domsg`.
unsafe extern "C" fn domsg_body(port: lwkt_port_t, msg: lwkt_msg_t) -> c_int {
    if port.is_null() {
        return einval("lwkt_domsg", "port");
    }
    if msg.is_null() {
        return einval("lwkt_domsg", "message");
    }
    // SAFETY: both pointers are non-NULL C objects owned by the caller.
    unsafe { core_mp::domsg(port, msg) }
}

/// Wait until `msg` has been replied (on its reply port) and return its
/// `ms_error`. Returns `EINVAL` for a NULL message.
#[unsafe(no_mangle)]
#[unsafe(naked)]
pub unsafe extern "C" fn lwkt_waitmsg(msg: lwkt_msg_t) -> c_int {
    blocking_entry!(waitmsg_body)
}

/// The body of [`lwkt_waitmsg`].
///
/// # Safety
/// As `lwkt_waitmsg`.
unsafe extern "C" fn waitmsg_body(msg: lwkt_msg_t) -> c_int {
    if msg.is_null() {
        return einval("lwkt_waitmsg", "message");
    }
    // SAFETY: `msg` is a non-NULL C object owned by the caller.
    unsafe { core_mp::waitmsg("lwkt_waitmsg", msg) }
}

/// Wait on `port` through its `mp_waitport`: for `msg == NULL` the next
/// message to arrive, else until `msg` is complete. Aborts on a NULL port.
#[unsafe(no_mangle)]
#[unsafe(naked)]
pub unsafe extern "C" fn lwkt_waitport(port: lwkt_port_t, msg: lwkt_msg_t) -> *mut c_void {
    blocking_entry!(waitport_body)
}

/// The body of [`lwkt_waitport`].
///
/// # Safety
/// As `lwkt_waitport`.
unsafe extern "C" fn waitport_body(port: lwkt_port_t, msg: lwkt_msg_t) -> *mut c_void {
    if port.is_null() {
        fatal!("lwkt_waitport", "NULL port");
    }
    // SAFETY: `port` is non-NULL; `msg` is passed on as given.
    unsafe { core_mp::waitport("lwkt_waitport", port, msg) }
}

/// Take the next message off `port` without waiting; NULL if none.
/// Aborts on a NULL port.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_getport(port: lwkt_port_t) -> *mut c_void {
    if port.is_null() {
        fatal!("lwkt_getport", "NULL port");
    }
    // SAFETY: `port` is a non-NULL, initialised port.
    unsafe { core_mp::getport(port).cast() }
}

/// Complete a received message with `error` and return it to its reply
/// port. Replying twice is fatal. Aborts on a NULL message.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_replymsg(msg: lwkt_msg_t, error: c_int) {
    if msg.is_null() {
        fatal!("lwkt_replymsg", "NULL message");
    }
    // SAFETY: `msg` is a non-NULL C object.
    unsafe { core_mp::replymsg("lwkt_replymsg", msg, error) }
}

/// Ask the message's target port to abort it (the default vector does
/// nothing). Aborts on a NULL message or one never sent.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_abortmsg(msg: lwkt_msg_t) {
    if msg.is_null() {
        fatal!("lwkt_abortmsg", "NULL message");
    }
    // SAFETY: `msg` is a non-NULL C object.
    unsafe { core_mp::abortmsg(msg) }
}

/// The default `mp_putport`: queue on `port`, wake its owner; `EASYNC`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_default_putport(port: lwkt_port_t, msg: lwkt_msg_t) -> c_int {
    if port.is_null() {
        return einval("lwkt_default_putport", "port");
    }
    if msg.is_null() {
        return einval("lwkt_default_putport", "message");
    }
    // SAFETY: both pointers are non-NULL C objects.
    unsafe { core_mp::default_putport(port, msg) }
}

/// The default `mp_waitport` (see `lwkt_waitport`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_default_waitport(port: lwkt_port_t, msg: lwkt_msg_t) -> *mut c_void {
    if port.is_null() {
        fatal!("lwkt_default_waitport", "NULL port");
    }
    // SAFETY: `port` is non-NULL; `msg` NULL or a C object.
    unsafe { core_mp::default_waitport(port, msg) }
}

/// The default `mp_replyport`: asynchronous messages are queued on `port`,
/// synchronous ones marked done; the owner is woken.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_default_replyport(port: lwkt_port_t, msg: lwkt_msg_t) {
    if port.is_null() {
        fatal!("lwkt_default_replyport", "NULL port");
    }
    if msg.is_null() {
        fatal!("lwkt_default_replyport", "NULL message");
    }
    // SAFETY: both pointers are non-NULL C objects.
    unsafe { core_mp::default_replyport(port, msg) }
}

/// The default `mp_abortport`: does nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_default_abortport(port: lwkt_port_t, msg: lwkt_msg_t) {
    core_mp::default_abortport(port, msg)
}
