//! One-line diagnostics on standard error, and the fatal form that ends the
//! process the way DragonFly's `KKASSERT` did.

use std::fmt::Arguments;

/// Write `libcaps: FUNC: MESSAGE` as one line on stderr.
pub fn warn(func: &str, args: Arguments<'_>) {
    let line = format!("libcaps: {func}: {args}\n");
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

/// `fatal!("lwkt_sendmsg", "NULL port")`
#[macro_export]
macro_rules! fatal {
    ($func:expr, $($arg:tt)*) => {
        $crate::diag::fatal($func, format_args!($($arg)*))
    };
}

/// `warn!("caps_client", "bad hello")`
#[macro_export]
macro_rules! warn {
    ($func:expr, $($arg:tt)*) => {
        $crate::diag::warn($func, format_args!($($arg)*))
    };
}
