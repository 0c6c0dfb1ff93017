//! The `caps_sys_*` calls as the in-process v2 tests use them (the
//! library's own entry points, linked into the test binary): open a
//! service or a client, reply, wait or look for a message, each failure
//! an assertion or an errno.
#![allow(dead_code)]

use caps::abi::{CAPF_ANYCLIENT, caps_msgid};
use caps::capi::caps::{
    caps_sys_client, caps_sys_get, caps_sys_reply, caps_sys_service, caps_sys_wait,
};
use std::ffi::CString;

/// This thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

/// Our effective uid and gid.
pub fn me() -> (u32, u32) {
    // SAFETY: plain id queries.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// `caps_sys_service` (`service`) or `caps_sys_client` of `name`, owned
/// by us, any client admitted; its descriptor.
pub fn open(name: &str, service: bool) -> i32 {
    let n = CString::new(name).unwrap();
    let (uid, gid) = me();
    // SAFETY: a valid C string.
    let r = unsafe {
        if service {
            caps_sys_service(n.as_ptr(), uid, gid, 0, CAPF_ANYCLIENT)
        } else {
            caps_sys_client(n.as_ptr(), uid, gid, 0, CAPF_ANYCLIENT)
        }
    };
    assert!(r >= 0, "open {name}: errno {}", errno());
    r
}

/// `caps_sys_reply` of `data` to message `msgid` of service `id`.
pub fn reply(id: i32, data: &[u8], msgid: i64) {
    // SAFETY: `data` is readable for its length; it is only read.
    let r = unsafe { caps_sys_reply(id, data.as_ptr() as *mut _, data.len() as i32, msgid) };
    assert_eq!(r, 0, "reply: errno {}", errno());
}

/// Wait (`block`) or look for the next message into `buf`: its size, id
/// and state, or the errno.
pub fn recv_into(id: i32, buf: &mut [u8], block: bool) -> Result<(usize, i64, u32), i32> {
    let mut m = caps_msgid {
        c_id: -1,
        c_state: 99,
        c_reserved01: 0,
    };
    let f = if block { caps_sys_wait } else { caps_sys_get };
    // SAFETY: `buf` is writable for its length; no credentials asked.
    let n = unsafe {
        f(
            id,
            buf.as_mut_ptr().cast(),
            buf.len() as i32,
            &mut m,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(errno());
    }
    Ok((n as usize, m.c_id, m.c_state))
}

/// [`recv_into`] a buffer of 256 bytes, dropped: the id and state.
pub fn recv(id: i32, block: bool) -> Result<(i64, u32), i32> {
    let mut buf = [0u8; 256];
    recv_into(id, &mut buf, block).map(|(_, id, state)| (id, state))
}
