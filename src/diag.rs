//! One-line diagnostics on standard error, the fatal form that ends the
//! process the way DragonFly's `KKASSERT` did, and the trace switch:
//! `LIBCAPS_DEBUG=1` in the environment turns on [`trace!`](crate::trace) lines
//! (docs/debugging.md lists what is traced).

use core::sync::atomic::{AtomicU8, Ordering};
use std::fmt::Arguments;

/// The trace switch: 0 not looked at yet, 1 off, 2 on.
static DEBUG: AtomicU8 = AtomicU8::new(0);

/// Is `LIBCAPS_DEBUG` on? One load once the environment has been read.
#[inline(always)]
pub fn debug_on() -> bool {
    match DEBUG.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => debug_init(),
    }
}

/// Read `LIBCAPS_DEBUG` (set and neither empty nor "0": on).
#[cold]
fn debug_init() -> bool {
    // SAFETY: getenv with a NUL-terminated name; the value is only read
    // here, before anything else in the library could change it.
    let on = unsafe {
        let v = libc::getenv(c"LIBCAPS_DEBUG".as_ptr());
        !v.is_null() && *v != 0 && !(*v == b'0' as core::ffi::c_char && *v.add(1) == 0)
    };
    DEBUG.store(if on { 2 } else { 1 }, Ordering::Relaxed);
    on
}

/// Is the environment variable `name` set to exactly "0" (a feature
/// switched off: `LIBCAPS_SHM=0`, `LIBCAPS_URING=0`)? Read with `getenv`,
/// not `std::env` (whose lock another thread may hold across a `fork`).
pub fn env_is_zero(name: &core::ffi::CStr) -> bool {
    // SAFETY: getenv with a NUL-terminated name; the value, NUL-terminated
    // when not null, is only read here.
    unsafe {
        let v = libc::getenv(name.as_ptr());
        !v.is_null() && *v == b'0' as core::ffi::c_char && *v.add(1) == 0
    }
}

/// Write a trace line `libcaps[PID]: FUNC: MESSAGE` (see [`trace!`](crate::trace)).
#[cold]
pub fn trace(func: &str, args: Arguments<'_>) {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    write_line(&format!("libcaps[{pid}]: {func}: {args}\n"));
}

/// Write `libcaps: FUNC: MESSAGE` as one line on stderr.
pub fn warn(func: &str, args: Arguments<'_>) {
    write_line(&format!("libcaps: {func}: {args}\n"));
}

fn write_line(line: &str) {
    // One write(2) call, so lines from several threads do not interleave,
    // and no lock: `std::io::stderr()`'s lock, held by another thread at a
    // `fork()`, would stay held forever in the child.
    let mut rest = line.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writes from a live byte slice to file descriptor 2.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            rest = &rest[n as usize..];
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            return;
        }
    }
}

/// Report a broken contract in `func` and abort the process.
pub fn fatal(func: &str, args: Arguments<'_>) -> ! {
    warn(func, args);
    std::process::abort()
}

/// Run `f`, which reports a fatal error, out of line: the closure
/// [`fatal!`] passes captures what it prints by value, so that a fast
/// path with a check that may be fatal keeps those values in registers
/// (formatting them in place takes their addresses, which made callers
/// store them on the stack on every call).
#[cold]
#[inline(never)]
pub fn fatal_cold<F: FnOnce() -> core::convert::Infallible>(f: F) -> ! {
    match f() {}
}

/// `fatal!("lwkt_sendmsg", "NULL port")`
#[macro_export]
macro_rules! fatal {
    ($func:expr, $($arg:tt)*) => {
        $crate::diag::fatal_cold(move || -> core::convert::Infallible {
            $crate::diag::fatal($func, format_args!($($arg)*))
        })
    };
}

/// `trace!("caps_client", "{path}: {err}")`: a line on stderr when
/// `LIBCAPS_DEBUG` is on; its arguments are not evaluated when it is off.
#[macro_export]
macro_rules! trace {
    ($func:expr, $($arg:tt)*) => {
        if $crate::diag::debug_on() {
            $crate::diag::trace($func, format_args!($($arg)*))
        }
    };
}

/// `warn!("caps_client", "bad hello")`
#[macro_export]
macro_rules! warn {
    ($func:expr, $($arg:tt)*) => {
        $crate::diag::warn($func, format_args!($($arg)*))
    };
}
