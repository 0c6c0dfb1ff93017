//! The Rust side of the C shim (`shim.c`): the variadic entry points
//! `lwkt_create`, `lwkt_set_comm` and `panic` are C functions that format
//! their arguments with `vsnprintf` and call these. Not part of any public
//! header (cbindgen does not read this file).

use core::ffi::{c_char, c_int, c_void};

use crate::abi::thread;
use crate::fatal;
use crate::lwkt::thread as lt;

/// `lwkt_create(func, arg, ptd, template, tdflags, cpu, fmt, ...)` once the
/// name is formatted: `comm` is NULL or the shim's `MAXCOMLEN + 1` bytes,
/// zero after the name. 0, or `ENOMEM` when no memory or stack is left.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn libcaps_thread_create(
    func: Option<unsafe extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
    ptd: *mut *mut thread,
    template: *mut thread,
    tdflags: c_int,
    cpu: c_int,
    comm: *const c_char,
) -> c_int {
    let Some(func) = func else {
        fatal!("lwkt_create", "NULL thread function")
    };
    // SAFETY: the C caller's pointers, documented in <sys/thread.h>;
    // `comm` as create wants it (see above).
    unsafe { lt::create(func, arg, ptd, template, tdflags, cpu, comm) }
}

/// `lwkt_set_comm(td, fmt, ...)` once the name is formatted (`comm` as
/// for [`libcaps_thread_create`]).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn libcaps_thread_set_comm(td: *mut thread, comm: *const c_char) {
    if td.is_null() {
        fatal!("lwkt_set_comm", "NULL thread");
    }
    // SAFETY: `td` is the caller's thread; `comm` NULL or the shim's
    // zero-padded buffer.
    unsafe { lt::set_comm_padded(td, comm) }
}
