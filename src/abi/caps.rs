//! `<sys/caps.h>`: CAPS v1 (November 2003) ports and credentials, with a
//! `struct caps_cred` laid out as the 2004 kernel API has it (with
//! `cacheid`) so one header serves `caps_service()`/`caps_client()` and the
//! `caps_sys_*` calls.

use core::ffi::{c_int, c_uint};

use super::lwkt_msg;
use super::lwkt_msg_queue;
use super::lwkt_port;

/// Credentials of a peer, as the kernel reported them (`SO_PEERCRED`,
/// `SO_PEERGROUPS`) when it connected.
#[repr(C)]
pub struct caps_cred {
    pub pid: libc::pid_t,
    pub uid: libc::uid_t,
    pub euid: libc::uid_t,
    pub gid: libc::gid_t,
    pub ngroups: c_int,
    pub cacheid: c_int,
    pub groups: [libc::gid_t; 16],
}

/// `TAILQ_HEAD(, caps_port)`
#[repr(C)]
pub struct caps_port_list {
    pub tqh_first: *mut caps_port,
    pub tqh_last: *mut *mut caps_port,
}

/// `TAILQ_ENTRY(caps_port)`
#[repr(C)]
pub struct caps_port_entry {
    pub tqe_next: *mut caps_port,
    pub tqe_prev: *mut *mut caps_port,
}

/// `enum caps_type` (the enum itself is declared in the header).
pub type caps_type = c_uint;

/// A CAPS port: a service, a client connection, or the server's side of a
/// client connection. `lport` comes first, so a `caps_port_t` may be used
/// as an `lwkt_port_t`.
///
/// cbindgen:field-names=[lport, server, type, kqfd, lfd, cfd, flags, clist, centry, wlist, mlist, rmsg_static, rmsg, cred, rbytes, wbytes]
#[repr(C)]
pub struct caps_port {
    pub lport: lwkt_port,
    pub server: *mut caps_port,
    pub type_: caps_type,
    pub kqfd: c_int,
    pub lfd: c_int,
    pub cfd: c_int,
    pub flags: c_int,
    pub clist: caps_port_list,
    pub centry: caps_port_entry,
    pub wlist: lwkt_msg_queue,
    pub mlist: lwkt_msg_queue,
    pub rmsg_static: lwkt_msg,
    pub rmsg: *mut lwkt_msg,
    pub cred: caps_cred,
    pub rbytes: c_int,
    pub wbytes: c_int,
}

/// `caps_port_t`
pub type caps_port_t = *mut caps_port;

pub const CAPS_USER: c_int = 0x00000001;
pub const CAPS_GROUP: c_int = 0x00000002;
pub const CAPS_WORLD: c_int = 0x00000004;
pub const CAPS_EXCL: c_int = 0x00000008;
pub const CAPS_ANYCLIENT: c_int = 0x00000007;
pub const CAPS_WCRED: c_int = 0x00000010;

pub const CAPT_UNKNOWN: caps_type = 0;
pub const CAPT_CLIENT: caps_type = 1;
pub const CAPT_SERVICE: caps_type = 2;
pub const CAPT_REMOTE: caps_type = 3;

pub const CAPS_MAXGROUPS: c_int = 16;

pub const CAPPF_WAITCRED: c_int = 0x0001;
pub const CAPPF_ONLIST: c_int = 0x0002;
pub const CAPPF_WREQUESTED: c_int = 0x0004;
pub const CAPPF_SHUTDOWN: c_int = 0x0008;

pub const CAPMSG_MAXSIZE: c_int = 66560;

// ---- CAPS v2: the caps_sys_* calls (sys/caps.h 1.6) ------------------

/// `CAPT_FORKED`: a `caps_sys_*` entry a child inherited across `fork()`.
pub const CAPT_FORKED: caps_type = 4;

/// `caps_msg_state_t`: what a message returned by `caps_sys_get` or
/// `caps_sys_wait` is (the enum itself is declared in the header).
pub type caps_msg_state_t = c_uint;

pub const CAPMS_REQUEST: caps_msg_state_t = 0;
pub const CAPMS_REQUEST_RETRY: caps_msg_state_t = 1;
pub const CAPMS_REPLY: caps_msg_state_t = 2;
pub const CAPMS_REPLY_RETRY: caps_msg_state_t = 3;
pub const CAPMS_DISPOSE: caps_msg_state_t = 4;

/// Identifies a message: `c_id` is the id `caps_sys_put` returned (client)
/// or the id to pass to `caps_sys_reply` (server); `c_state` what it is.
#[repr(C)]
pub struct caps_msgid {
    pub c_id: libc::off_t,
    pub c_state: caps_msg_state_t,
    pub c_reserved01: c_int,
}

/// `caps_msgid_t`
pub type caps_msgid_t = *mut caps_msgid;

/// A service's generation number (`caps_sys_setgen`, `caps_sys_getgen`).
pub type caps_gen_t = i64;

pub const CAPF_UFLAGS: c_int = 0xFFFF;
pub const CAPF_USER: c_int = 0x0001;
pub const CAPF_GROUP: c_int = 0x0002;
pub const CAPF_WORLD: c_int = 0x0004;
pub const CAPF_EXCL: c_int = 0x0008;
pub const CAPF_ANYCLIENT: c_int = 0x0007;
pub const CAPF_WCRED: c_int = 0x0010;
pub const CAPF_NOFORK: c_int = 0x0020;
pub const CAPF_WAITSVC: c_int = 0x0040;

pub const CAPS_ABORT_NOTIMPL: c_int = 0;
pub const CAPS_ABORT_RETURNED: c_int = 1;
pub const CAPS_ABORT_BEFORESERVER: c_int = 2;
pub const CAPS_ABORT_ATSERVER: c_int = 3;

pub const CAPF_ABORT_HARD: c_int = 0x0001;

pub const CAPS_MAXNAMELEN: c_int = 64;
pub const CAPS_MAXINPROG: c_int = 128;
