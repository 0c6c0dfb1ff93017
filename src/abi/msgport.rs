//! `<sys/msgport.h>`: LWKT message and port structures, Generation A layout
//! (November 2003, the one `caps1` was written against), and their constants.
//!
//! This file is parsed by cbindgen (struct part of the header) and by the
//! `abi-test` crate (ctest2), so it keeps to plain syntax: types, consts and
//! type aliases only.

use core::ffi::{c_int, c_long, c_void};

use super::thread;

/// Link node of a message (`TAILQ_ENTRY(lwkt_msg) ms_node`).
#[repr(C)]
pub struct lwkt_msg_entry {
    pub tqe_next: *mut lwkt_msg,
    pub tqe_prev: *mut *mut lwkt_msg,
}

/// Message queue head (`TAILQ_HEAD(lwkt_msg_queue, lwkt_msg)`).
#[repr(C)]
pub struct lwkt_msg_queue {
    pub tqh_first: *mut lwkt_msg,
    pub tqh_last: *mut *mut lwkt_msg,
}

/// Chaining pointers of a message (`union { ... } opaque`).
#[repr(C)]
#[derive(Copy, Clone)]
pub union lwkt_msg_opaque {
    pub ms_next: *mut lwkt_msg,
    pub ms_sysunnext: *mut c_void,
    pub ms_umsg: *mut lwkt_msg,
}

/// Result slot of a message (`union { ... } u`).
#[repr(C)]
#[derive(Copy, Clone)]
pub union lwkt_msg_result {
    pub ms_resultp: *mut c_void,
    pub ms_result: c_int,
    pub ms_lresult: c_long,
    pub ms_fds: [c_int; 2],
    pub ms_result32: i32,
    pub ms_result64: i64,
    pub ms_offset: i64,
}

/// An LWKT message. Usually the header of a larger, caller-defined structure.
#[repr(C)]
pub struct lwkt_msg {
    pub ms_node: lwkt_msg_entry,
    pub opaque: lwkt_msg_opaque,
    pub ms_target_port: *mut lwkt_port,
    pub ms_reply_port: *mut lwkt_port,
    pub ms_maxsize: c_int,
    pub ms_cmd: c_int,
    pub ms_flags: c_int,
    pub ms_msgsize: c_int,
    pub ms_error: c_int,
    pub u: lwkt_msg_result,
    pub ms_pad: [c_int; 2],
}

/// A message port: a queue plus four vectors that define what sending,
/// waiting, replying and aborting mean for this port.
#[repr(C)]
pub struct lwkt_port {
    pub mp_msgq: lwkt_msg_queue,
    pub mp_flags: c_int,
    pub mp_refs: c_int,
    pub mp_td: *mut thread,
    pub mp_putport: Option<unsafe extern "C" fn(*mut lwkt_port, *mut lwkt_msg) -> c_int>,
    pub mp_waitport: Option<unsafe extern "C" fn(*mut lwkt_port, *mut lwkt_msg) -> *mut c_void>,
    pub mp_replyport: Option<unsafe extern "C" fn(*mut lwkt_port, *mut lwkt_msg)>,
    pub mp_abortport: Option<unsafe extern "C" fn(*mut lwkt_port, *mut lwkt_msg)>,
}

/// `lwkt_msg_t`
pub type lwkt_msg_t = *mut lwkt_msg;
/// `lwkt_port_t`
pub type lwkt_port_t = *mut lwkt_port;

/// Message is complete and owned by its originator.
pub const MSGF_DONE: c_int = 0x0001;
/// Message has been returned (replied).
pub const MSGF_REPLY: c_int = 0x0002;
/// Message is on some port's queue.
pub const MSGF_QUEUED: c_int = 0x0004;
/// Asynchronous send (set by `lwkt_sendmsg`).
pub const MSGF_ASYNC: c_int = 0x0008;
/// Abort requested or occurred.
pub const MSGF_ABORTED: c_int = 0x0010;

/// The owner thread is blocked waiting on this port.
pub const MSGPORTF_WAITING: c_int = 0x0001;

pub const MSG_CMD_CDEV: c_int = 0x00010000;
pub const MSG_CMD_VFS: c_int = 0x00020000;
pub const MSG_CMD_SYSCALL: c_int = 0x00030000;
pub const MSG_CMD_NETMSG: c_int = 0x00040000;
pub const MSG_SUBCMD_MASK: c_int = 0x0000FFFF;

/// "Operation will complete asynchronously". DragonFly used 99, which is
/// `EADDRNOTAVAIL` on Linux; 1099 is outside every Linux errno range.
pub const EASYNC: c_int = 1099;
