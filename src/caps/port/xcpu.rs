//! CAPS v1 ports used from another cpu. A port's connection state (its
//! socket, request ids, frame buffers, the service's lists) belongs to
//! the cpu that created the port, whose event loop drives its socket.
//! A call from a thread of another cpu must not touch it:
//!
//! * sending a request (`mp_putport` of a client port) and replying to a
//!   request (`mp_replyport` of a connection or a client port) are handed
//!   to the port's cpu by IPI, as the default LWKT vectors hand messages
//!   over; the reply wakes the sender on its own cpu;
//! * waiting (`lwkt_waitport` on a service, `caps_client_waitreply`) and
//!   `caps_close` cannot be handed over (only the port's owner waits; a
//!   close frees the port under its caller): they are refused with
//!   `EXDEV` and one log line naming the call, the port and both cpus.

use core::ffi::c_void;
use core::sync::atomic::Ordering;

use super::client::client_send;
use super::request::{REQ_HANDED, REQ_MAGIC, req_head};
use super::*;
use crate::abi::{EASYNC, MSGF_DONE, MSGF_QUEUED, MSGF_REPLY, globaldata, lwkt_port};
use crate::cpu::ipi;
use crate::lwkt::mycpu;
use crate::warn;

/// The cpu of `port`'s owner when the caller runs on another cpu.
///
/// # Safety
/// `port` must be a live CAPS port.
pub(super) unsafe fn other_cpu(port: *mut lwkt_port) -> Option<*mut globaldata> {
    // SAFETY: per the contract; the owner thread lives while it owns the
    // port.
    unsafe {
        let owner = (*port).mp_td;
        if owner.is_null() {
            return None;
        }
        let ogd = (*owner).td_gd;
        (ogd != mycpu()).then_some(ogd)
    }
}

/// Refuse a call on `port` made from a thread of another cpu than the
/// port's `ogd`: one log line, `errno = EXDEV`, and `EXDEV` to return.
///
/// # Safety
/// `ogd` must be a live cpu.
pub(super) unsafe fn refuse(func: &str, port: *mut lwkt_port, ogd: *mut globaldata) -> i32 {
    // SAFETY: both cpus are live.
    let (mine, its) = unsafe { ((*mycpu()).gd_cpuid, (*ogd).gd_cpuid) };
    warn!(
        func,
        "CAPS port {port:p} belongs to cpu {its}, called from cpu {mine}: refused (EXDEV); \
         use a CAPS port from threads of the cpu that created it"
    );
    // SAFETY: errno is thread-local and always writable.
    unsafe { *libc::__errno_location() = Errno::EXDEV.0 };
    Errno::EXDEV.0
}

/// Hand request `msg` (checked by the caller) on client port `p` to the
/// port's cpu `ogd`, which sends it. `EASYNC`; the reply (or the error
/// of a connection found dead there) comes back through the message's
/// reply port. A message whose reply port is the client port itself
/// could only be waited for on the port's cpu: `EXDEV`.
///
/// # Safety
/// `p` must be a live client port of cpu `ogd`, `msg` the caller's live
/// message.
pub(super) unsafe fn client_put_elsewhere(
    p: *mut CapsPort,
    msg: *mut lwkt_msg,
    ogd: *mut globaldata,
) -> i32 {
    // SAFETY: per the contract; the message is the caller's until the
    // IPI hands it over.
    unsafe {
        let port = &raw mut (*p).c.lport;
        let rport = (*msg).ms_reply_port;
        if rport.is_null() || rport == port {
            return refuse("lwkt_beginmsg", port, ogd);
        }
        (*msg).ms_flags &= !(MSGF_DONE | MSGF_REPLY | MSGF_QUEUED);
        (*msg).ms_target_port = port;
        (*p).handovers.fetch_add(1, Ordering::SeqCst);
        ipi::send(ogd, client_put_ipi, msg.cast());
    }
    EASYNC
}

/// IPI: the send half of [`client_put_elsewhere`], on the port's cpu.
///
/// # Safety
/// Run only by the IPI [`client_put_elsewhere`] sent: `arg` is the
/// handed-over live message, its target a client port of this cpu.
unsafe extern "C" fn client_put_ipi(arg: *mut c_void) {
    let msg = arg.cast::<lwkt_msg>();
    // SAFETY: the sender handed over its live message, whose target is a
    // client port of this cpu kept alive by its hand-over count
    // (`drain_handovers`).
    unsafe {
        let p = (*msg).ms_target_port.cast::<CapsPort>();
        let error = client_send(p, msg);
        (*p).handovers.fetch_sub(1, Ordering::SeqCst);
        if error != EASYNC {
            mp::replymsg("lwkt_beginmsg", msg, error);
        }
    }
}

/// Hand a reply to `msg`, whose reply port `port` belongs to cpu `ogd`,
/// over to that cpu. A request buffer of a connection is marked handed
/// over first, so a second reply is caught at once.
///
/// # Safety
/// `port` must be a live client or connection port of cpu `ogd`; `msg`
/// a message whose reply port it is.
pub(super) unsafe fn reply_elsewhere(
    port: *mut lwkt_port,
    msg: *mut lwkt_msg,
    ogd: *mut globaldata,
) {
    // SAFETY: per the contract.
    unsafe {
        let p = port.cast::<CapsPort>();
        if (*p).c.type_ == CAPT_REMOTE {
            (*req_head(msg)).magic = REQ_HANDED;
        }
        (*p).handovers.fetch_add(1, Ordering::SeqCst);
        ipi::send(ogd, reply_ipi, msg.cast());
    }
}

/// IPI: a reply handed over by [`reply_elsewhere`], on the port's cpu.
///
/// # Safety
/// Run only by the IPI [`reply_elsewhere`] sent: `arg` is the replied
/// live message, its reply port a CAPS port of this cpu.
unsafe extern "C" fn reply_ipi(arg: *mut c_void) {
    let msg = arg.cast::<lwkt_msg>();
    // SAFETY: the replier handed over a live message whose reply port is
    // a port of this cpu, alive while its hand-over count is not zero (a
    // connection also by the request's reference).
    unsafe {
        let port = (*msg).ms_reply_port;
        let p = port.cast::<CapsPort>();
        if (*p).c.type_ == CAPT_REMOTE {
            (*req_head(msg)).magic = REQ_MAGIC;
        }
        (*p).handovers.fetch_sub(1, Ordering::SeqCst);
        match (*port).mp_replyport {
            Some(reply) => reply(port, msg),
            None => unreachable!("CAPS ports always have a reply vector"),
        }
    }
}

/// Hand-overs still on their way to port `p` or, for a service, to one
/// of its connections?
///
/// # Safety
/// `p` must be live.
unsafe fn handovers_pending(p: *mut CapsPort) -> bool {
    // SAFETY: per the contract; listed connections are live.
    unsafe {
        if (*p).handovers.load(Ordering::SeqCst) != 0 {
            return true;
        }
        match &(*p).kind {
            Kind::Service(s) => s
                .remotes
                .iter()
                .any(|&r| (*r).handovers.load(Ordering::SeqCst) != 0),
            _ => false,
        }
    }
}

/// Run the hand-overs still on their way to port `p` (on its own cpu)
/// before it is shut down and freed: the requests other cpus sent on a
/// client port, the replies they made to a service's requests (so that
/// those are written before the service drops its connections, as a
/// reply made on the service's cpu is).
///
/// # Safety
/// `p` must be a live port of the current cpu.
pub(super) unsafe fn drain_handovers(p: *mut CapsPort) {
    let gd = mycpu();
    let mut spins = 0u32;
    // SAFETY: `p` is live; `gd` is the current cpu.
    while unsafe { handovers_pending(p) } {
        // SAFETY: as above.
        unsafe { ipi::process(gd) };
        spins += 1;
        if spins.is_multiple_of(64) {
            std::thread::yield_now();
        } else {
            core::hint::spin_loop();
        }
    }
}

/// Is `rport` (a message's reply port) owned on the current cpu, or by
/// nobody? Only such messages are remembered for
/// `caps_client_waitreply(port, NULL)`: a reply that went to another cpu
/// is that cpu's to collect.
///
/// # Safety
/// `rport` must be NULL or a valid port.
pub(super) unsafe fn reply_port_is_local(rport: *mut lwkt_port) -> bool {
    // SAFETY: per the contract.
    unsafe { rport.is_null() || other_cpu(rport).is_none() }
}
