//! Where services live and how their sockets come to exist.
//!
//! A service `NAME` of user `UID` is the Unix socket
//! `BASE/users/UID/NAME` (`BASE/root/NAME` for uid 0). `BASE` is
//! `/var/caps`, or `$LIBCAPS_DIR` when set. The socket node is created
//! atomically: bound under a temporary name in the same directory, given
//! exactly the requested mode, put in listening state, then renamed over
//! the final name. A client therefore never sees a half-made service.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// An errno value.
pub type Errno = i32;

/// `sizeof(((struct sockaddr_un *)0)->sun_path)` less the terminating NUL.
const SUN_PATH_MAX: usize = 107;

/// Listen backlog, as in the original.
const BACKLOG: i32 = 128;

/// The rendezvous base directory.
pub fn base_dir() -> PathBuf {
    match std::env::var_os("LIBCAPS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/var/caps"),
    }
}

/// The directory holding the `caps_sys_service()` (CAPS v2) services of
/// every user: `BASE/sys`, one flat namespace.
pub fn sys_dir() -> PathBuf {
    base_dir().join("sys")
}

/// The directory holding the services of `uid`.
pub fn service_dir(uid: u32) -> PathBuf {
    if uid == 0 {
        base_dir().join("root")
    } else {
        base_dir().join("users").join(uid.to_string())
    }
}

/// Check a service name: non-empty, no `/`, not `.` or `..`.
pub fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
        return Err(libc::EINVAL);
    }
    Ok(())
}

/// The socket path of service `name` of user `uid`.
pub fn service_path(name: &[u8], uid: u32) -> Result<PathBuf, Errno> {
    check_name(name)?;
    let path = service_dir(uid).join(std::ffi::OsStr::from_bytes(name));
    if path.as_os_str().len() > SUN_PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    Ok(path)
}

fn last_errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn cpath(p: &Path) -> Result<CString, Errno> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)
}

/// `mkdir` with an exact mode (umask does not apply); an existing
/// directory is fine.
fn mkdir_exact(p: &Path, mode: u32) -> Result<(), Errno> {
    let c = cpath(p)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::mkdir(c.as_ptr(), 0o700) } != 0 {
        let e = last_errno();
        if e == libc::EEXIST {
            return Ok(());
        }
        crate::trace!(
            "caps",
            "cannot create directory {}: {}",
            p.display(),
            crate::diag::errno_text(e)
        );
        return Err(e);
    }
    // SAFETY: as above.
    if unsafe { libc::chmod(c.as_ptr(), mode) } != 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// Make sure the directory for `uid`'s services exists: `BASE` (0755),
/// `BASE/root` (0755) or `BASE/users` (1777) and `BASE/users/UID` (0755).
pub fn ensure_service_dir(uid: u32) -> Result<PathBuf, Errno> {
    let base = base_dir();
    mkdir_exact(&base, 0o755)?;
    if uid == 0 {
        mkdir_exact(&base.join("root"), 0o755)?;
    } else {
        mkdir_exact(&base.join("users"), 0o1777)?;
        mkdir_exact(&service_dir(uid), 0o755)?;
    }
    Ok(service_dir(uid))
}

/// Make sure `BASE` (0755) and `BASE/sys` (1777, like `/tmp`: anyone may
/// publish, nobody may remove another user's node) exist.
pub fn ensure_sys_dir() -> Result<PathBuf, Errno> {
    mkdir_exact(&base_dir(), 0o755)?;
    let dir = sys_dir();
    mkdir_exact(&dir, 0o1777)?;
    Ok(dir)
}

/// Does the path fit in `sun_path`?
pub fn check_path_len(path: &Path) -> Result<(), Errno> {
    if path.as_os_str().len() > SUN_PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    Ok(())
}

fn sockaddr(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t), Errno> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() > SUN_PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sa.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    Ok((sa, len as libc::socklen_t))
}

fn unix_socket(nonblock: bool) -> Result<OwnedFd, Errno> {
    let flags =
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblock { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, flags, 0) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connect a blocking stream socket to `path`.
pub fn connect(path: &Path) -> Result<OwnedFd, Errno> {
    let (sa, len) = sockaddr(path)?;
    let fd = unix_socket(false)?;
    loop {
        // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
        let r = unsafe { libc::connect(fd.as_raw_fd(), (&raw const sa).cast(), len) };
        if r == 0 {
            return Ok(fd);
        }
        let e = last_errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Is a live service listening at `path`? (A stale socket refuses.)
pub fn is_live(path: &Path) -> bool {
    let Ok((sa, len)) = sockaddr(path) else {
        return false;
    };
    let Ok(fd) = unix_socket(true) else {
        return false;
    };
    // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
    let r = unsafe { libc::connect(fd.as_raw_fd(), (&raw const sa).cast(), len) };
    // A full backlog (EAGAIN) still means somebody listens.
    r == 0 || last_errno() == libc::EAGAIN
}

/// Holds an exclusive `flock` on a directory while services are created
/// in it, so two `CAPS_EXCL` services cannot both win.
struct DirLock(OwnedFd);

impl Drop for DirLock {
    /// Unlock explicitly: closing is not enough when a `fork()` by another
    /// thread copied the descriptor meanwhile (the lock belongs to the open
    /// file, which the child then keeps, so the child's own next service
    /// would wait for it forever).
    fn drop(&mut self) {
        // SAFETY: flock on the descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl DirLock {
    fn new(dir: &Path) -> Result<DirLock, Errno> {
        let c = cpath(dir)?;
        // SAFETY: `c` is a valid path; the result is checked.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(last_errno());
        }
        // SAFETY: `fd` is new and ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: flock on a descriptor we own; released by `drop`.
        while unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) } != 0 {
            let e = last_errno();
            if e != libc::EINTR {
                return Err(e);
            }
        }
        Ok(DirLock(fd))
    }
}

static TEMP_SEQ: AtomicU32 = AtomicU32::new(0);

/// Create the listening socket of a service at `path` with exactly `mode`.
/// With `excl`, fail with `EEXIST` while a live service answers there; a
/// dead service's socket is replaced either way.
pub fn listen(path: &Path, mode: u32, excl: bool) -> Result<Listener, Errno> {
    listen_unless(path, mode, || excl && is_live(path))
}

/// `listen`, failing with `EEXIST` when `conflict()`, which runs while
/// the directory is locked against other service creations.
pub fn listen_unless(
    path: &Path,
    mode: u32,
    conflict: impl FnOnce() -> bool,
) -> Result<Listener, Errno> {
    let r = publish(path, mode, conflict);
    match &r {
        Ok(_) => crate::trace!(
            "caps",
            "service created: {} (mode {mode:o})",
            path.display()
        ),
        Err(e) => crate::trace!(
            "caps",
            "cannot create service {}: {}",
            path.display(),
            crate::diag::errno_text(*e)
        ),
    }
    r
}

/// The work of [`listen_unless`].
fn publish(path: &Path, mode: u32, conflict: impl FnOnce() -> bool) -> Result<Listener, Errno> {
    let dir = path.parent().ok_or(libc::EINVAL)?;
    let _lock = DirLock::new(dir)?;
    if conflict() {
        return Err(libc::EEXIST);
    }
    let mut tmp: OsString = dir.as_os_str().to_owned();
    tmp.push(format!(
        "/.caps.{}.{}",
        std::process::id(),
        TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    let (sa, len) = sockaddr(&tmp)?;
    let fd = unix_socket(true)?;
    let ctmp = cpath(&tmp)?;
    // SAFETY: `ctmp` names a path in a directory we just locked; a leftover
    // of a previous process with the same pid and sequence is removed.
    unsafe { libc::unlink(ctmp.as_ptr()) };
    let result = (|| {
        // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
        if unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), len) } != 0 {
            return Err(last_errno());
        }
        // SAFETY: valid path; chmod is not subject to the umask.
        if unsafe { libc::chmod(ctmp.as_ptr(), mode & 0o7777) } != 0 {
            return Err(last_errno());
        }
        // SAFETY: `fd` is a bound stream socket.
        if unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) } != 0 {
            return Err(last_errno());
        }
        let cfinal = cpath(path)?;
        // SAFETY: both paths are valid; rename replaces atomically.
        if unsafe { libc::rename(ctmp.as_ptr(), cfinal.as_ptr()) } != 0 {
            return Err(last_errno());
        }
        Ok(())
    })();
    if let Err(e) = result {
        // SAFETY: removing our own temporary node.
        unsafe { libc::unlink(ctmp.as_ptr()) };
        return Err(e);
    }
    let node = node_id(path).ok_or(libc::ENOENT)?;
    Ok(Listener {
        fd,
        path: path.to_owned(),
        node,
    })
}

/// A service's listening socket and the filesystem node it was published
/// as.
pub struct Listener {
    pub fd: OwnedFd,
    pub path: PathBuf,
    node: (u64, u64),
}

impl Listener {
    /// Remove the socket node if it still is ours (a later service may
    /// have replaced it).
    pub fn unlink(&self) {
        if node_id(&self.path) == Some(self.node)
            && let Ok(c) = cpath(&self.path)
        {
            // SAFETY: valid path.
            unsafe { libc::unlink(c.as_ptr()) };
            crate::trace!("caps", "service removed: {}", self.path.display());
        }
    }
}

/// (device, inode) of the node at `path`, not following a final symlink.
fn node_id(path: &Path) -> Option<(u64, u64)> {
    let c = cpath(path).ok()?;
    // SAFETY: stat is plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and writable buffer.
    (unsafe { libc::lstat(c.as_ptr(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn names_that_escape_or_overflow_are_refused() {
        for bad in [&b""[..], b"a/b", b"..", b".", b"/etc"] {
            assert_eq!(check_name(bad), Err(libc::EINVAL), "{bad:?}");
        }
        assert!(check_name(b"test").is_ok());
        assert!(check_name(b"...x").is_ok());
        assert_eq!(service_path(&[b'x'; 200], 1000), Err(libc::ENAMETOOLONG));
    }

    #[test]
    fn paths_follow_the_original_layout() {
        let root = service_path(b"svc", 0).unwrap();
        assert!(root.ends_with("root/svc"), "{}", root.display());
        let user = service_path(b"svc", 1234).unwrap();
        assert!(user.ends_with("users/1234/svc"), "{}", user.display());
    }

    #[test]
    fn listen_is_atomic_exact_mode_and_exclusive_only_while_alive() {
        let dir = std::env::temp_dir().join(format!("caps-rdv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("svc");
        let l = listen(&path, 0o640, true).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        assert_eq!(meta.mode() & libc::S_IFMT, libc::S_IFSOCK);
        // no temporaries left behind
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(is_live(&path));
        assert_eq!(listen(&path, 0o600, true).err(), Some(libc::EEXIST));
        let c = connect(&path).unwrap();
        drop(c);
        drop(l);
        // the dead service's node is still there and is replaced
        assert!(path.exists() && !is_live(&path));
        let l2 = listen(&path, 0o666, true).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o666
        );
        // a replaced node is not removed by its former owner
        let l3 = listen(&path, 0o600, false).unwrap();
        l2.unlink();
        assert!(path.exists());
        l3.unlink();
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
