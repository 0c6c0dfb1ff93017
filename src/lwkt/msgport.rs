//! LWKT message ports: the semantics of DragonFly's `lwkt_msgport.c`
//! (Generation A) over the `#[repr(C)]` structures of `abi::msgport`.
//!
//! Messages are synchronous by default. A port's `mp_putport` either runs
//! the message at once and returns its real error (synchronous completion)
//! or queues it and returns `EASYNC`. `lwkt_domsg` hides the difference by
//! waiting; `lwkt_sendmsg` hides it by replying synchronous completions to
//! the reply port, so the sender always finds the message there.
//!
//! Every function here takes raw pointers into C memory; the `capi` layer
//! has already rejected NULL for the arguments it documents as required.
//!
//! Across cpus: a port's queue and `MSGPORTF_WAITING` belong to the cpu of
//! the port's owner thread. A put or reply from another cpu does its
//! checks and flag changes on the sending side, then hands the message to
//! the owner's cpu as an IPI, which queues it (or marks it done) and wakes
//! the owner there. The message belongs to whoever holds it: the sender
//! until the IPI, the owner's cpu after it.

use core::ffi::{c_int, c_void};
use core::ptr;

use super::boot::mycpu;
use super::queue;
use super::sched;
use crate::abi::{
    EASYNC, MSGF_ASYNC, MSGF_DONE, MSGF_QUEUED, MSGF_REPLY, MSGPORTF_WAITING, globaldata, lwkt_msg,
    lwkt_port, thread,
};
use crate::cpu::{ipi, mycpu_if_any};
use crate::fatal;

/// `(current cpu, cpu of the port's owner when that is another cpu)`.
/// A port without an owner is used where it is: both NULL, and the
/// current cpu is not even looked up (such ports work on any kernel
/// thread).
///
/// # Safety
/// `port` must be valid.
#[inline(always)]
unsafe fn port_cpus(port: *mut lwkt_port) -> (*mut globaldata, *mut globaldata) {
    // SAFETY: per the contract; an owner thread is valid while it owns
    // the port.
    unsafe {
        let owner = (*port).mp_td;
        if owner.is_null() {
            return (ptr::null_mut(), ptr::null_mut());
        }
        let gd = mycpu();
        let ogd = (*owner).td_gd;
        (gd, if ogd == gd { ptr::null_mut() } else { ogd })
    }
}

/// The four vectors of a port, in the order `struct lwkt_port` holds them.
pub struct PortVectors {
    pub putport: unsafe extern "C" fn(*mut lwkt_port, *mut lwkt_msg) -> c_int,
    pub waitport: unsafe extern "C" fn(*mut lwkt_port, *mut lwkt_msg) -> *mut c_void,
    pub replyport: unsafe extern "C" fn(*mut lwkt_port, *mut lwkt_msg),
    pub abortport: unsafe extern "C" fn(*mut lwkt_port, *mut lwkt_msg),
}

/// The default vectors installed by `lwkt_initport`.
pub const DEFAULT_VECTORS: PortVectors = PortVectors {
    putport: vec_putport,
    waitport: vec_waitport,
    replyport: vec_replyport,
    abortport: vec_abortport,
};

/// `lwkt_initport`: zero the port, make `td` its owner, empty its queue and
/// install `vectors`.
///
/// # Safety
/// `port` must be valid for writes of a whole `struct lwkt_port`.
pub unsafe fn initport(port: *mut lwkt_port, td: *mut thread, vectors: &PortVectors) {
    // SAFETY: the caller guarantees `port` is writable; an all-zero
    // lwkt_port is a valid value (NULL pointers, None vectors).
    unsafe {
        ptr::write_bytes(port, 0, 1);
        initport_zeroed(port, td, vectors);
    }
}

/// [`initport`] of a port that is already all zeroes (the built-in port
/// of a thread being initialised).
///
/// # Safety
/// `port` must be valid for writes and zeroed.
#[inline(always)]
pub unsafe fn initport_zeroed(port: *mut lwkt_port, td: *mut thread, vectors: &PortVectors) {
    // SAFETY: per the contract.
    unsafe {
        queue::init(&raw mut (*port).mp_msgq);
        (*port).mp_td = td;
        (*port).mp_putport = Some(vectors.putport);
        (*port).mp_waitport = Some(vectors.waitport);
        (*port).mp_replyport = Some(vectors.replyport);
        (*port).mp_abortport = Some(vectors.abortport);
    }
}

/// `lwkt_initmsg`: a fresh, completed message whose replies go to `rport`.
///
/// # Safety
/// `msg` must be valid for writes.
pub unsafe fn initmsg(msg: *mut lwkt_msg, rport: *mut lwkt_port, cmd: c_int) {
    // SAFETY: the caller guarantees `msg` is writable.
    unsafe {
        (*msg).ms_cmd = cmd;
        (*msg).ms_flags = MSGF_DONE;
        (*msg).ms_reply_port = rport;
        (*msg).ms_msgsize = 0;
        (*msg).ms_maxsize = 0;
    }
}

/// `lwkt_reinitmsg`: keep only the async hint, mark done, new reply port.
///
/// # Safety
/// `msg` must be valid for reads and writes.
pub unsafe fn reinitmsg(msg: *mut lwkt_msg, rport: *mut lwkt_port) {
    // SAFETY: the caller guarantees `msg` is valid.
    unsafe {
        (*msg).ms_flags = ((*msg).ms_flags & MSGF_ASYNC) | MSGF_DONE;
        (*msg).ms_reply_port = rport;
    }
}

/// `lwkt_beginmsg` / `lwkt_forwardmsg`: record `port` as the message's
/// target and hand it to the port's `mp_putport`. Returns `EASYNC` when the
/// message was queued, otherwise the synchronous result.
///
/// # Safety
/// `port` and `msg` must be valid.
pub unsafe fn beginmsg(func: &str, port: *mut lwkt_port, msg: *mut lwkt_msg) -> c_int {
    // SAFETY: the caller guarantees both pointers are valid.
    unsafe {
        let Some(putport) = (*port).mp_putport else {
            fatal!(func, "port {port:p} has no mp_putport (not initialised?)")
        };
        (*msg).ms_target_port = port;
        putport(port, msg)
    }
}

/// `lwkt_sendmsg`: asynchronous send; a synchronous completion is replied
/// to the reply port at once.
///
/// # Safety
/// `port` and `msg` must be valid.
pub unsafe fn sendmsg(port: *mut lwkt_port, msg: *mut lwkt_msg) {
    // SAFETY: the caller guarantees both pointers are valid.
    unsafe {
        if (*msg).ms_reply_port.is_null() {
            fatal!("lwkt_sendmsg", "message {msg:p} has no reply port");
        }
        (*msg).ms_flags = ((*msg).ms_flags | MSGF_ASYNC) & !(MSGF_REPLY | MSGF_QUEUED);
        let error = beginmsg("lwkt_sendmsg", port, msg);
        if error != EASYNC {
            replymsg("lwkt_sendmsg", msg, error);
        }
    }
}

/// `lwkt_domsg`: synchronous send; waits for the reply when the target
/// queued the message, and returns the final error.
///
/// # Safety
/// `port` and `msg` must be valid.
#[inline(always)]
pub unsafe fn domsg(port: *mut lwkt_port, msg: *mut lwkt_msg) -> c_int {
    // SAFETY: the caller guarantees both pointers are valid.
    unsafe {
        if let Some(error) = domsg_direct(port, msg) {
            return error;
        }
        (*msg).ms_flags &= !(MSGF_ASYNC | MSGF_REPLY | MSGF_QUEUED);
        let error = beginmsg("lwkt_domsg", port, msg);
        if error == EASYNC {
            waitmsg("lwkt_domsg", msg)
        } else {
            error
        }
    }
}

/// [`domsg`] when the target
/// is a port with the default vectors whose owner waits on it on this
/// cpu, and the reply port has the default vectors and belongs to the
/// current thread: the put and the wait of the general path in one go,
/// with the cpu handed straight to the owner when `lwkt_switch` would
/// run it next anyway ([`sched::direct_queue`]). The message and ports
/// go through the same states as on the general path. `None`, with
/// nothing done, in every other case.
///
/// # Safety
/// `port` and `msg` must be valid.
#[inline(always)]
unsafe fn domsg_direct(port: *mut lwkt_port, msg: *mut lwkt_msg) -> Option<c_int> {
    // SAFETY: per the contract; the owner of a port is a valid thread
    // while it owns it, the reply port is checked before use.
    unsafe {
        // First what a send to another cpu reads anyway (`mp_td`, the
        // vectors, the owner's `td_gd`: one cache line of a thread that
        // `thread::alloc_struct` placed, written only when the thread is
        // set up), so that such a send looks at nothing the owner writes
        // as it waits (`mp_flags`, `td_pri`, `td_flags`).
        let owner = (*port).mp_td;
        if owner.is_null()
            || (*port).mp_putport.map(|f| f as usize) != Some(vec_putport as *const () as usize)
        {
            return None;
        }
        let gd = mycpu();
        let rport = (*msg).ms_reply_port;
        if (*owner).td_gd != gd
            || (*port).mp_flags & MSGPORTF_WAITING == 0
            || rport.is_null()
            || (*rport).mp_waitport.map(|f| f as usize) != Some(vec_waitport as *const () as usize)
        {
            return None;
        }
        let td = (*gd).gd_curthread;
        if (*rport).mp_td != td {
            return None;
        }
        let q = sched::direct_queue(gd, td, owner)?;
        // default_putport on the owner's cpu, with domsg's flags: of
        // ASYNC, DONE, REPLY and QUEUED only QUEUED is left set.
        (*msg).ms_target_port = port;
        (*msg).ms_flags = ((*msg).ms_flags & !(MSGF_ASYNC | MSGF_DONE | MSGF_REPLY)) | MSGF_QUEUED;
        queue::insert_tail(&raw mut (*port).mp_msgq, msg);
        (*port).mp_flags &= !MSGPORTF_WAITING;
        // default_waitport of the reply port: block until done.
        (*rport).mp_flags |= MSGPORTF_WAITING;
        (*td).td_wchan = rport.cast();
        sched::block_direct(gd, td, owner, q, c"waitport".as_ptr());
        let mut done = wait_done(rport, msg);
        if done.is_null() {
            // Woken before the reply (lwkt_schedule by someone else).
            done = vec_waitport(rport, msg).cast();
        }
        Some((*done).ms_error)
    }
}

/// `lwkt_waitmsg`: wait on the message's reply port for its completion and
/// return `ms_error`. A port whose wait fails (returns NULL, as a dead CAPS
/// connection does) still yields the error stored in the message.
///
/// # Safety
/// `msg` must be valid.
#[inline(always)]
pub unsafe fn waitmsg(func: &str, msg: *mut lwkt_msg) -> c_int {
    // SAFETY: the caller guarantees `msg` is valid; its reply port is
    // checked before use.
    unsafe {
        let rport = (*msg).ms_reply_port;
        if rport.is_null() {
            fatal!(func, "message {msg:p} has no reply port to wait on");
        }
        let done = waitport(func, rport, msg).cast::<lwkt_msg>();
        if done.is_null() {
            (*msg).ms_error
        } else {
            (*done).ms_error
        }
    }
}

/// `lwkt_waitport`: dispatch to the port's `mp_waitport`.
///
/// # Safety
/// `port` must be valid; `msg` NULL or valid.
#[inline(always)]
pub unsafe fn waitport(func: &str, port: *mut lwkt_port, msg: *mut lwkt_msg) -> *mut c_void {
    // SAFETY: the caller guarantees `port` is valid.
    unsafe {
        let Some(waitport) = (*port).mp_waitport else {
            fatal!(func, "port {port:p} has no mp_waitport (not initialised?)")
        };
        // The default vector inline: a thread that blocks here then
        // resumes in its caller's frame, whose return the gate of
        // `lwkt::arch` keeps predicted.
        if waitport as usize == vec_waitport as *const () as usize {
            return default_waitport(port, msg);
        }
        waitport(port, msg)
    }
}

/// `lwkt_replymsg`: store the error and hand the message to its reply
/// port's `mp_replyport`.
///
/// # Safety
/// `msg` must be valid.
pub unsafe fn replymsg(func: &str, msg: *mut lwkt_msg, error: c_int) {
    // SAFETY: the caller guarantees `msg` is valid; the reply port is
    // checked before use.
    unsafe {
        let rport = (*msg).ms_reply_port;
        if rport.is_null() {
            fatal!(func, "message {msg:p} has no reply port");
        }
        let Some(replyport) = (*rport).mp_replyport else {
            fatal!(
                func,
                "reply port {rport:p} has no mp_replyport (not initialised?)"
            )
        };
        (*msg).ms_error = error;
        replyport(rport, msg);
    }
}

/// `lwkt_abortmsg`: ask the message's current target to abort it.
///
/// # Safety
/// `msg` must be valid.
pub unsafe fn abortmsg(msg: *mut lwkt_msg) {
    // SAFETY: the caller guarantees `msg` is valid; the target is checked.
    unsafe {
        let port = (*msg).ms_target_port;
        if port.is_null() {
            fatal!(
                "lwkt_abortmsg",
                "message {msg:p} was never sent (no target port)"
            );
        }
        if let Some(abortport) = (*port).mp_abortport {
            abortport(port, msg);
        }
    }
}

/// `lwkt_getport`: take the first message off the port's queue without
/// blocking; NULL when the queue is empty.
///
/// # Safety
/// `port` must be valid.
pub unsafe fn getport(port: *mut lwkt_port) -> *mut lwkt_msg {
    // SAFETY: the caller guarantees `port` is valid and its queue
    // initialised; messages on it are valid while queued.
    unsafe {
        let msg = queue::first(&raw const (*port).mp_msgq);
        if !msg.is_null() {
            queue::remove(&raw mut (*port).mp_msgq, msg);
            (*msg).ms_flags &= !MSGF_QUEUED;
        }
        msg
    }
}

/// Default `mp_putport`: queue the message on the port and wake the owner
/// if it waits there. Always `EASYNC`.
///
/// # Safety
/// Called through a port vector with valid `port` and `msg`.
#[inline(always)]
pub unsafe fn default_putport(port: *mut lwkt_port, msg: *mut lwkt_msg) -> c_int {
    // SAFETY: valid pointers per the vector contract.
    unsafe {
        if (*msg).ms_flags & MSGF_QUEUED != 0 {
            fatal!(
                "lwkt_putport",
                "message {msg:p} is already queued on a port"
            );
        }
        (*msg).ms_flags &= !(MSGF_DONE | MSGF_REPLY);
        let (gd, rgd) = port_cpus(port);
        if !rgd.is_null() {
            (*msg).ms_target_port = port;
            ipi::send(rgd, putport_ipi, msg.cast());
            return EASYNC;
        }
        queue::insert_tail(&raw mut (*port).mp_msgq, msg);
        (*msg).ms_flags |= MSGF_QUEUED;
        wake_owner_local(gd, port);
    }
    EASYNC
}

/// IPI: the queueing half of a put from another cpu, on the owner's cpu.
///
/// # Safety
/// Only sent with [`ipi::send`] to the cpu of the target port's owner;
/// `arg` is a valid message handed over by the sender, its
/// `ms_target_port` a valid port.
unsafe extern "C" fn putport_ipi(arg: *mut c_void) {
    let gd = mycpu();
    let msg = arg.cast::<lwkt_msg>();
    // SAFETY: the sender handed over a valid message whose target port is
    // owned by a thread of this cpu.
    unsafe {
        let port = (*msg).ms_target_port;
        queue::insert_tail(&raw mut (*port).mp_msgq, msg);
        (*msg).ms_flags |= MSGF_QUEUED;
        wake_owner_local(gd, port);
    }
}

/// IPI: the completion half of a reply from another cpu, on the cpu of
/// the reply port's owner.
///
/// # Safety
/// Only sent with [`ipi::send`] to the cpu of the reply port's owner;
/// `arg` is a valid message handed over by the replier, its
/// `ms_reply_port` a valid port.
unsafe extern "C" fn replyport_ipi(arg: *mut c_void) {
    let gd = mycpu();
    let msg = arg.cast::<lwkt_msg>();
    // SAFETY: as above, for the reply port.
    unsafe {
        let port = (*msg).ms_reply_port;
        if (*msg).ms_flags & MSGF_ASYNC != 0 {
            queue::insert_tail(&raw mut (*port).mp_msgq, msg);
            (*msg).ms_flags |= MSGF_DONE | MSGF_QUEUED;
        } else {
            (*msg).ms_flags |= MSGF_DONE;
        }
        wake_owner_local(gd, port);
    }
}

/// Default `mp_replyport`: an asynchronous message is queued on the reply
/// port; a synchronous one is only marked done. Either way the port's owner
/// is woken if it waits. Replying to a message twice is fatal.
///
/// # Safety
/// Called through a port vector with valid `port` and `msg`.
#[inline(always)]
pub unsafe fn default_replyport(port: *mut lwkt_port, msg: *mut lwkt_msg) {
    // SAFETY: valid pointers per the vector contract.
    unsafe {
        if !reply_here(port, msg) {
            reply_general(port, msg);
        }
    }
}

/// The common reply, done without a call: a synchronous message, neither
/// replied nor queued, to a port whose owner runs on the current cpu. It
/// is marked done and replied, and the owner woken if it waits on the
/// port. `false`, with nothing done, in every other case (which
/// [`reply_general`] handles, fatal errors included).
///
/// # Safety
/// `port` and `msg` must be valid.
#[inline(always)]
unsafe fn reply_here(port: *mut lwkt_port, msg: *mut lwkt_msg) -> bool {
    // SAFETY: per the contract; an owner thread is valid while it owns
    // the port, and a waiting port's owner is the live thread that set
    // MSGPORTF_WAITING.
    unsafe {
        let flags = (*msg).ms_flags;
        let owner = (*port).mp_td;
        if flags & (MSGF_REPLY | MSGF_QUEUED | MSGF_ASYNC) != 0 || owner.is_null() {
            return false;
        }
        let gd = mycpu_if_any();
        if gd.is_null() || (*owner).td_gd != gd {
            return false;
        }
        (*msg).ms_flags = flags | MSGF_DONE | MSGF_REPLY;
        let pflags = (*port).mp_flags;
        if pflags & MSGPORTF_WAITING != 0 {
            (*port).mp_flags = pflags & !MSGPORTF_WAITING;
            sched::wake_local(gd, owner);
        }
        true
    }
}

/// [`default_replyport`] in full: replies of asynchronous messages,
/// replies to another cpu, to ports without an owner, and the fatal
/// errors.
///
/// # Safety
/// `port` and `msg` must be valid.
#[inline(never)]
unsafe fn reply_general(port: *mut lwkt_port, msg: *mut lwkt_msg) {
    // SAFETY: valid pointers per the vector contract.
    unsafe {
        let flags = (*msg).ms_flags;
        if flags & MSGF_REPLY != 0 {
            fatal!("lwkt_replymsg", "message {msg:p} replied twice");
        }
        if flags & MSGF_QUEUED != 0 {
            fatal!(
                "lwkt_replymsg",
                "message {msg:p} replied while still queued on a port"
            );
        }
        let (gd, rgd) = port_cpus(port);
        if !rgd.is_null() {
            if port != (*msg).ms_reply_port {
                fatal!(
                    "lwkt_replymsg",
                    "message {msg:p}: replying through port {port:p}, owned by a thread of \
                     another cpu, which is not the message's reply port"
                );
            }
            (*msg).ms_flags |= MSGF_REPLY;
            ipi::send(rgd, replyport_ipi, msg.cast());
            return;
        }
        if flags & MSGF_ASYNC != 0 {
            queue::insert_tail(&raw mut (*port).mp_msgq, msg);
            (*msg).ms_flags |= MSGF_DONE | MSGF_REPLY | MSGF_QUEUED;
        } else {
            (*msg).ms_flags |= MSGF_DONE | MSGF_REPLY;
        }
        wake_owner_local(gd, port);
    }
}

/// Default `mp_waitport`. With `msg == NULL`: dequeue the next message,
/// waiting until one arrives (never NULL). With a message: wait until it
/// is done, take it off the port's queue if it is queued there, return it.
///
/// # Safety
/// Called through a port vector with a valid `port`; `msg` NULL or valid.
#[inline(always)]
pub unsafe fn default_waitport(port: *mut lwkt_port, msg: *mut lwkt_msg) -> *mut c_void {
    // SAFETY: valid pointers per the vector contract.
    unsafe {
        // The owner, which must be the caller (NULL for a port without
        // an owner), and the current cpu, looked up once for the wait.
        let (gd, owner) = owner_cpu("lwkt_waitport", port);
        // The common wait without a loop (whose invariants the compiler
        // would keep on the stack across the switch): one look, one
        // block, one more look. The block goes straight to the thread
        // that takes the cpu when it is the one other thread of the run
        // queue (the client a server has just replied to), else through
        // the general switch. A wake-up with nothing ready goes on in
        // `wait_loop`.
        let ready = wait_ready(port, msg);
        if !ready.is_null() {
            return ready.cast();
        }
        if owner.is_null() {
            ownerless_wait(wait_func(msg), port);
        }
        mark_waiting(port, owner);
        let wmesg = c"waitport".as_ptr();
        if !sched::block_next(gd, owner, wmesg) {
            sched::block_current(wait_func(msg), gd, owner, wmesg);
        }
        let ready = wait_ready(port, msg);
        if !ready.is_null() {
            return ready.cast();
        }
        mark_waiting(port, owner);
        wait_loop(port, msg, gd, owner)
    }
}

/// The name of the C function waiting for `msg` (for diagnostics).
fn wait_func(msg: *mut lwkt_msg) -> &'static str {
    if msg.is_null() {
        "lwkt_waitport"
    } else {
        "lwkt_waitmsg"
    }
}

/// What [`default_waitport`] waits for: the next message of `port` (for
/// `msg == NULL`) or `msg` done; NULL while there is none.
///
/// # Safety
/// `port` must be valid; `msg` NULL or valid.
#[inline(always)]
unsafe fn wait_ready(port: *mut lwkt_port, msg: *mut lwkt_msg) -> *mut lwkt_msg {
    // SAFETY: per the contract.
    unsafe {
        if msg.is_null() {
            getport(port)
        } else {
            wait_done(port, msg)
        }
    }
}

/// Mark `port` waited on by its owner `owner`, about to block.
///
/// # Safety
/// `port` must be valid and `owner` its owner, the current thread.
#[inline(always)]
unsafe fn mark_waiting(port: *mut lwkt_port, owner: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        (*port).mp_flags |= MSGPORTF_WAITING;
        // What the thread waits on, for gdb (cleared on resuming).
        (*owner).td_wchan = port.cast();
    }
}

/// [`default_waitport`] in general, once `port` is marked waited on and
/// nothing is ready: block until woken, look, for as long as it takes.
///
/// # Safety
/// As [`default_waitport`]; `(gd, owner)` is what [`owner_cpu`] returned
/// for `port`, `owner` not NULL.
#[inline(never)]
unsafe fn wait_loop(
    port: *mut lwkt_port,
    msg: *mut lwkt_msg,
    gd: *mut globaldata,
    owner: *mut thread,
) -> *mut c_void {
    let func = wait_func(msg);
    // SAFETY: per the contract.
    unsafe {
        loop {
            sched::block_current(func, gd, owner, c"waitport".as_ptr());
            let ready = wait_ready(port, msg);
            if !ready.is_null() {
                return ready.cast();
            }
            mark_waiting(port, owner);
        }
    }
}

/// The waited-for message `msg` once it is done (taken off `port`'s
/// queue if it is queued there), else NULL.
///
/// # Safety
/// `port` and `msg` must be valid.
#[inline(always)]
unsafe fn wait_done(port: *mut lwkt_port, msg: *mut lwkt_msg) -> *mut lwkt_msg {
    // SAFETY: per the contract; a queued message is on `port`'s queue.
    unsafe {
        if ptr::read_volatile(&raw const (*msg).ms_flags) & MSGF_DONE == 0 {
            return ptr::null_mut();
        }
        if (*msg).ms_flags & MSGF_QUEUED != 0 {
            queue::remove(&raw mut (*port).mp_msgq, msg);
            (*msg).ms_flags &= !MSGF_QUEUED;
        }
        msg
    }
}

/// Default `mp_abortport`: a no-op, as in DragonFly from March 2004 on
/// (Generation A messages have no abort state).
pub fn default_abortport(_port: *mut lwkt_port, _msg: *mut lwkt_msg) {}

/// Wake the thread that owns `port` if it is waiting on it.
///
/// # Safety
/// `port` must be valid.
pub(crate) unsafe fn wake_owner(port: *mut lwkt_port) {
    // SAFETY: the caller guarantees `port` is valid.
    unsafe {
        let (gd, rgd) = port_cpus(port);
        if rgd.is_null() {
            wake_owner_local(gd, port);
        } else {
            ipi::send(rgd, wake_owner_ipi, port.cast());
        }
    }
}

/// IPI: [`wake_owner`] on the owner's cpu.
///
/// # Safety
/// Only sent with [`ipi::send`] to the cpu of the port's owner; `arg` is
/// a valid port.
unsafe extern "C" fn wake_owner_ipi(arg: *mut c_void) {
    // SAFETY: the sender passed a valid port owned by a thread of this cpu.
    unsafe { wake_owner_local(mycpu(), arg.cast()) }
}

/// [`wake_owner`] when the owner (if any) runs on the current cpu `gd`.
///
/// # Safety
/// `port` must be valid; `gd` is the current cpu (NULL only for a port
/// without an owner).
#[inline(always)]
unsafe fn wake_owner_local(gd: *mut globaldata, port: *mut lwkt_port) {
    // SAFETY: the caller guarantees `port` is valid; a waiting port's
    // owner is the live thread that set MSGPORTF_WAITING.
    unsafe {
        if (*port).mp_flags & MSGPORTF_WAITING != 0 {
            (*port).mp_flags &= !MSGPORTF_WAITING;
            let td = (*port).mp_td;
            if !td.is_null() {
                super::sched::schedule_local(gd, td);
            }
        }
    }
}

/// Block the current thread until something is put on (or replied to)
/// `port`, letting other threads run. The caller must own the port (it is
/// the only thread a put or reply wakes); a port without an owner can wake
/// nobody, so waiting on it is reported as the deadlock it would be.
///
/// # Safety
/// `port` must be valid.
pub(crate) unsafe fn block_on_port(func: &str, port: *mut lwkt_port) {
    // SAFETY: the caller guarantees `port` is valid.
    unsafe {
        if (*port).mp_td.is_null() {
            ownerless_wait(func, port);
        }
        // default_waitport checked on entry that the caller owns the port.
        (*port).mp_flags |= MSGPORTF_WAITING;
        (*(*port).mp_td).td_wchan = port.cast();
        super::sched::block_self(func, c"waitport".as_ptr());
    }
}

/// A wait on a port without an owner: nothing could ever wake the waiter.
#[cold]
fn ownerless_wait(func: &str, port: *mut lwkt_port) -> ! {
    fatal!(
        func,
        "deadlock: port {port:p} has no owner thread, so nothing could wake a thread \
         waiting on it (lwkt_initport(port, curthread))"
    )
}

/// Refuse a wait on a port owned by another thread (DragonFly asserted
/// `mp_td == curthread`). Ports without an owner are not checked.
///
/// # Safety
/// `port` must be valid.
#[inline(always)]
pub(crate) unsafe fn check_owner(func: &str, port: *mut lwkt_port) {
    // SAFETY: the caller guarantees `port` is valid.
    unsafe { owner_cpu(func, port) };
}

/// [`check_owner`], returning `(current cpu, owner)` for a port with an
/// owner (the owner is then the current thread) and `(NULL, NULL)` for a
/// port without one.
///
/// # Safety
/// `port` must be valid.
#[inline(always)]
unsafe fn owner_cpu(func: &str, port: *mut lwkt_port) -> (*mut globaldata, *mut thread) {
    // SAFETY: the caller guarantees `port` is valid.
    let owner = unsafe { (*port).mp_td };
    if owner.is_null() {
        return (ptr::null_mut(), ptr::null_mut());
    }
    let gd = mycpu();
    // SAFETY: `gd` is the current cpu; its current thread is valid.
    let td = unsafe { (*gd).gd_curthread };
    if owner != td {
        fatal!(
            func,
            "thread {td:p} waits on port {port:p}, which is owned by thread {owner:p}: only \
             the owner may wait on a port"
        );
    }
    (gd, owner)
}

/// `mp_putport` of [`DEFAULT_VECTORS`].
///
/// # Safety
/// As [`default_putport`]: `port` and `msg` valid (called through the
/// port's vector with its own arguments).
unsafe extern "C" fn vec_putport(port: *mut lwkt_port, msg: *mut lwkt_msg) -> c_int {
    // SAFETY: the vector is only reached through a port, with its arguments.
    unsafe { default_putport(port, msg) }
}

/// `mp_waitport` of [`DEFAULT_VECTORS`].
///
/// # Safety
/// As [`default_waitport`].
unsafe extern "C" fn vec_waitport(port: *mut lwkt_port, msg: *mut lwkt_msg) -> *mut c_void {
    // SAFETY: as above.
    unsafe { default_waitport(port, msg) }
}

/// `mp_replyport` of [`DEFAULT_VECTORS`].
///
/// # Safety
/// As [`default_replyport`].
unsafe extern "C" fn vec_replyport(port: *mut lwkt_port, msg: *mut lwkt_msg) {
    // SAFETY: as above.
    unsafe { default_replyport(port, msg) }
}

/// `mp_abortport` of [`DEFAULT_VECTORS`].
///
/// # Safety
/// None beyond the C signature: [`default_abortport`] only reports the
/// call.
unsafe extern "C" fn vec_abortport(port: *mut lwkt_port, msg: *mut lwkt_msg) {
    default_abortport(port, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::MaybeUninit;

    fn port() -> Box<lwkt_port> {
        // SAFETY: an all-zero lwkt_port is valid; initport then sets it up.
        let mut p: Box<lwkt_port> = Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        // SAFETY: `p` is a live, writable port.
        unsafe { initport(&mut *p, ptr::null_mut(), &DEFAULT_VECTORS) };
        p
    }

    fn msg(rport: *mut lwkt_port, cmd: c_int) -> Box<lwkt_msg> {
        // SAFETY: an all-zero lwkt_msg is valid.
        let mut m: Box<lwkt_msg> = Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        // SAFETY: `m` is a live, writable message.
        unsafe { initmsg(&mut *m, rport, cmd) };
        m
    }

    /// A put vector that completes synchronously: counts in `ms_result`.
    ///
    /// # Safety
    /// `msg` must be a valid message.
    unsafe extern "C" fn sync_put(_port: *mut lwkt_port, msg: *mut lwkt_msg) -> c_int {
        // SAFETY: called by beginmsg with a valid message.
        unsafe { (*msg).u.ms_result += 1 };
        3
    }

    #[test]
    fn initport_is_empty_with_default_vectors() {
        let mut p = port();
        assert!(p.mp_msgq.tqh_first.is_null());
        assert_eq!(p.mp_msgq.tqh_last, &raw mut p.mp_msgq.tqh_first);
        assert!(p.mp_putport.is_some() && p.mp_abortport.is_some());
        // SAFETY: `p` is initialised.
        assert!(unsafe { getport(&mut *p) }.is_null());
    }

    #[test]
    fn sendmsg_queues_and_reply_comes_back_async() {
        let (mut target, mut rport) = (port(), port());
        let mut m = msg(&mut *rport, 7);
        // SAFETY: all objects are live for the whole test.
        unsafe {
            sendmsg(&mut *target, &mut *m);
            assert_eq!(m.ms_flags, MSGF_ASYNC | MSGF_QUEUED);
            let got = default_waitport(&mut *target, ptr::null_mut()).cast::<lwkt_msg>();
            assert_eq!(got, &raw mut *m);
            replymsg("test", got, 11);
            assert_eq!(
                m.ms_flags,
                MSGF_ASYNC | MSGF_DONE | MSGF_REPLY | MSGF_QUEUED
            );
            assert_eq!(waitmsg("test", &mut *m), 11);
            assert_eq!(m.ms_flags & MSGF_QUEUED, 0);
            assert!(getport(&mut *rport).is_null());
        }
    }

    #[test]
    fn sync_completion_is_returned_by_domsg_and_replied_by_sendmsg() {
        let (mut target, mut rport) = (port(), port());
        target.mp_putport = Some(sync_put);
        let mut m = msg(&mut *rport, 0);
        // SAFETY: all objects are live for the whole test.
        unsafe {
            assert_eq!(domsg(&mut *target, &mut *m), 3);
            assert_eq!(m.u.ms_result, 1);
            assert!(getport(&mut *rport).is_null());
            sendmsg(&mut *target, &mut *m);
            assert_eq!(m.ms_error, 3);
            assert_eq!(getport(&mut *rport), &raw mut *m);
        }
    }

    #[test]
    fn fifo_order_and_remove_from_middle() {
        let (mut p, mut r) = (port(), port());
        let mut ms: Vec<Box<lwkt_msg>> = (0..5).map(|i| msg(&mut *r, i)).collect();
        // SAFETY: the messages outlive their time on the queue.
        unsafe {
            for m in ms.iter_mut() {
                assert_eq!(beginmsg("test", &mut *p, &mut **m), EASYNC);
            }
            queue::remove(&mut p.mp_msgq, &mut *ms[2]);
            let order: Vec<c_int> = std::iter::from_fn(|| {
                let m = getport(&mut *p);
                (!m.is_null()).then(|| (*m).ms_cmd)
            })
            .collect();
            assert_eq!(order, [0, 1, 3, 4]);
            assert_eq!(p.mp_msgq.tqh_last, &raw mut p.mp_msgq.tqh_first);
        }
    }

    #[test]
    fn putport_clears_reply_so_a_reused_message_can_be_replied_again() {
        let (mut p, mut r) = (port(), port());
        let mut m = msg(&mut *r, 0);
        // SAFETY: all objects are live for the whole test.
        unsafe {
            for round in 0..3 {
                assert_eq!(beginmsg("test", &mut *p, &mut *m), EASYNC);
                let got = getport(&mut *p);
                replymsg("test", got, round);
                assert_eq!(waitmsg("test", &mut *m), round);
            }
        }
    }
}
