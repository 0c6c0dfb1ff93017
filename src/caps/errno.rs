//! The one errno type of CAPS: every fallible call under `caps/` returns
//! `Result<_, Errno>`; the C layer (`capi/caps.rs`) stores `.0` in
//! `errno` or a message's `ms_error`.

use std::fmt;

/// A POSIX error number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EXDEV: Errno = Errno(libc::EXDEV);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ENFILE: Errno = Errno(libc::ENFILE);
    pub const EMFILE: Errno = Errno(libc::EMFILE);
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const ELOOP: Errno = Errno(libc::ELOOP);
    pub const EPROTO: Errno = Errno(libc::EPROTO);
    pub const EMSGSIZE: Errno = Errno(libc::EMSGSIZE);
    pub const ECONNABORTED: Errno = Errno(libc::ECONNABORTED);
    pub const ECONNRESET: Errno = Errno(libc::ECONNRESET);
    pub const ENOBUFS: Errno = Errno(libc::ENOBUFS);
    pub const ENOTCONN: Errno = Errno(libc::ENOTCONN);
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);
    pub const ECONNREFUSED: Errno = Errno(libc::ECONNREFUSED);
    pub const EPIPE: Errno = Errno(libc::EPIPE);

    /// The calling thread's `errno` (`EIO` if the OS gave none).
    pub fn last() -> Errno {
        Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }

    /// The symbolic name (`"EINVAL"`), or `"E?"` for one not listed above.
    pub fn name(self) -> &'static str {
        const NAMES: [(Errno, &str); 25] = [
            (Errno::EPERM, "EPERM"),
            (Errno::ENOENT, "ENOENT"),
            (Errno::EINTR, "EINTR"),
            (Errno::EIO, "EIO"),
            (Errno::EBADF, "EBADF"),
            (Errno::EAGAIN, "EAGAIN"),
            (Errno::EACCES, "EACCES"),
            (Errno::EEXIST, "EEXIST"),
            (Errno::EXDEV, "EXDEV"),
            (Errno::ENOTDIR, "ENOTDIR"),
            (Errno::EINVAL, "EINVAL"),
            (Errno::ENFILE, "ENFILE"),
            (Errno::EMFILE, "EMFILE"),
            (Errno::ERANGE, "ERANGE"),
            (Errno::ENAMETOOLONG, "ENAMETOOLONG"),
            (Errno::ELOOP, "ELOOP"),
            (Errno::EPROTO, "EPROTO"),
            (Errno::EMSGSIZE, "EMSGSIZE"),
            (Errno::ECONNABORTED, "ECONNABORTED"),
            (Errno::ECONNRESET, "ECONNRESET"),
            (Errno::ENOBUFS, "ENOBUFS"),
            (Errno::ENOTCONN, "ENOTCONN"),
            (Errno::ETIMEDOUT, "ETIMEDOUT"),
            (Errno::ECONNREFUSED, "ECONNREFUSED"),
            (Errno::EPIPE, "EPIPE"),
        ];
        NAMES
            .iter()
            .find(|(e, _)| *e == self)
            .map_or("E?", |(_, n)| n)
    }
}

/// `strerror` text and the number, as the log lines have always shown
/// them: `No such file or directory (os error 2)`.
impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_text() {
        assert_eq!(Errno::EACCES.name(), "EACCES");
        assert_eq!(Errno::EPIPE, Errno(libc::EPIPE));
        assert_eq!(Errno::EPIPE.name(), "EPIPE");
        assert_eq!(Errno(9999).name(), "E?");
        assert_eq!(
            Errno::ENOENT.to_string(),
            "No such file or directory (os error 2)"
        );
    }

    #[test]
    fn last_reads_errno() {
        // SAFETY: close(-1) only sets errno.
        unsafe { libc::close(-1) };
        assert_eq!(Errno::last(), Errno::EBADF);
    }
}
