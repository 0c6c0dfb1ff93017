//! One-line diagnostics on standard error, and the fatal form that ends the
//! process the way DragonFly's `KKASSERT` did.

use std::fmt::Arguments;
use std::io::Write;

/// Write `libcaps: FUNC: MESSAGE` as one line on stderr.
pub fn warn(func: &str, args: Arguments<'_>) {
    let line = format!("libcaps: {func}: {args}\n");
    // One write call, so lines from several threads do not interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
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
