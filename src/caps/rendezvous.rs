//! Where services live and how their sockets come to exist.
//!
//! A service `NAME` of user `UID` is the Unix socket
//! `BASE/users/UID/NAME` (`BASE/root/NAME` for uid 0). `BASE` is
//! `/var/caps`, or `$LIBCAPS_DIR` when set. With the directory locked,
//! the socket is bound under its final path (so the kernel reports that
//! path), given exactly the requested mode, then put in listening state:
//! until then it refuses connections as a dead service's node does. Only
//! a service replacing a live one is bound under a temporary name in the
//! same directory, made ready, then renamed over the final name, so that
//! clients always find one of the two. A client never sees a half-made
//! service.
//!
//! A service never follows a link below `BASE` nor uses a directory
//! another user controls: each directory is opened with
//! `openat(O_NOFOLLOW | O_DIRECTORY)` from its verified parent, its owner
//! and mode are checked with `fstat` (see `Rule`), and the node is
//! created, renamed and unlinked relative to that descriptor. A directory
//! or node that fails is refused with [`EUNSAFE`] and one log line naming
//! the path and its owner.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::warn;

use super::errno::Errno;

/// The errno of a rendezvous directory or node that is not safe to use
/// (a link, another user's directory or node, a directory others may
/// write without the sticky bit).
pub const EUNSAFE: Errno = Errno::EPERM;

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
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// The socket path of service `name` of user `uid`.
pub fn service_path(name: &[u8], uid: u32) -> Result<PathBuf, Errno> {
    check_name(name)?;
    let path = service_dir(uid).join(std::ffi::OsStr::from_bytes(name));
    check_path_len(&path)?;
    Ok(path)
}

fn cstr(b: &[u8]) -> Result<CString, Errno> {
    CString::new(b).map_err(|_| Errno::EINVAL)
}

fn cpath(p: &Path) -> Result<CString, Errno> {
    cstr(p.as_os_str().as_bytes())
}

fn euid() -> u32 {
    // SAFETY: plain id query.
    unsafe { libc::geteuid() }
}

fn fstat(fd: RawFd) -> Result<libc::stat, Errno> {
    // SAFETY: stat is plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor the caller owns and a writable buffer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(Errno::last());
    }
    Ok(st)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: the node itself.
fn lstat_at(dir: RawFd, name: &CString) -> Option<libc::stat> {
    // SAFETY: stat is plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, name and buffer.
    (unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } == 0)
        .then_some(st)
}

/// What kind of node a mode describes, for log lines.
fn kind(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symbolic link",
        libc::S_IFREG => "regular file",
        libc::S_IFIFO => "FIFO",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        _ => "node",
    }
}

/// What a rendezvous directory must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// `BASE`: owned by root or the caller.
    Base,
    /// `BASE/root`: root's, writable by nobody else.
    Root,
    /// `BASE/users`, `BASE/sys`: owned by root or the caller; sticky if
    /// others may write it.
    Shared,
    /// `BASE/users/UID`: owned by `UID`, writable by nobody else.
    Owner(u32),
}

impl Rule {
    /// Why `st` breaks the rule, if it does.
    fn broken(self, st: &libc::stat) -> Option<&'static str> {
        let others_write = st.st_mode & 0o022 != 0;
        let me = euid();
        match self {
            Rule::Base if st.st_uid != 0 && st.st_uid != me => Some("not root's nor ours"),
            Rule::Root if st.st_uid != 0 => Some("not root's"),
            Rule::Shared if st.st_uid != 0 && st.st_uid != me => Some("not root's nor ours"),
            Rule::Shared if others_write && st.st_mode & libc::S_ISVTX == 0 => {
                Some("writable by others without the sticky bit")
            }
            Rule::Owner(u) if st.st_uid != u => Some("not the service owner's"),
            Rule::Root | Rule::Owner(_) if others_write => Some("writable by others"),
            _ => None,
        }
    }
}

/// A verified rendezvous directory, open.
pub struct Dir {
    fd: OwnedFd,
    pub path: PathBuf,
}

impl Dir {
    /// Refuse `st` (of this directory) unless it keeps `rule`.
    fn verify(self, func: &str, rule: Rule) -> Result<Dir, Errno> {
        let st = fstat(self.fd.as_raw_fd())?;
        if let Some(why) = rule.broken(&st) {
            warn!(
                func,
                "{}: directory of uid {} (mode {:o}) is {why}: refused",
                self.path.display(),
                st.st_uid,
                st.st_mode & 0o7777
            );
            return Err(EUNSAFE);
        }
        Ok(self)
    }

    /// `BASE`, made 0755 if missing (a link there is the administrator's
    /// choice and is followed).
    fn base(func: &str) -> Result<Dir, Errno> {
        let path = base_dir();
        let c = cpath(&path)?;
        // SAFETY: `c` is a valid NUL-terminated path.
        if unsafe { libc::mkdir(c.as_ptr(), 0o700) } == 0 {
            // SAFETY: as above; chmod is not subject to the umask.
            unsafe { libc::chmod(c.as_ptr(), 0o755) };
        }
        // SAFETY: as above; the result is checked.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Dir { fd, path }.verify(func, Rule::Base)
    }

    /// The subdirectory `name`, made with exactly `mode` if missing, never
    /// through a link, checked against `rule`.
    fn sub(&self, func: &str, name: &str, mode: u32, rule: Rule) -> Result<Dir, Errno> {
        let c = cstr(name.as_bytes())?;
        let path = self.path.join(name);
        let dfd = self.fd.as_raw_fd();
        // SAFETY: valid descriptor and name.
        let created = unsafe { libc::mkdirat(dfd, c.as_ptr(), 0o700) } == 0;
        if !created && Errno::last() != Errno::EEXIST {
            let e = Errno::last();
            crate::trace!("caps", "cannot create directory {}: {}", path.display(), e);
            return Err(e);
        }
        // SAFETY: valid descriptor and name; the result is checked.
        let fd = unsafe {
            libc::openat(
                dfd,
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = Errno::last();
            return match lstat_at(dfd, &c) {
                Some(st) if e == Errno::ELOOP || e == Errno::ENOTDIR => {
                    warn!(
                        func,
                        "{}: a {} of uid {} where a directory belongs: not followed",
                        path.display(),
                        kind(st.st_mode),
                        st.st_uid
                    );
                    Err(EUNSAFE)
                }
                _ => Err(e),
            };
        }
        // SAFETY: a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: our own descriptor of the directory we just made;
        // fchmod is not subject to the umask.
        if created && unsafe { libc::fchmod(fd.as_raw_fd(), mode) } != 0 {
            return Err(Errno::last());
        }
        Dir { fd, path }.verify(func, rule)
    }
}

/// The verified directory of `uid`'s v1 services: `BASE` (0755),
/// `BASE/root` (0755) or `BASE/users` (1777) and `BASE/users/UID` (0755),
/// each made if missing.
pub fn open_service_dir(func: &str, uid: u32) -> Result<Dir, Errno> {
    let base = Dir::base(func)?;
    if uid == 0 {
        base.sub(func, "root", 0o755, Rule::Root)
    } else {
        let users = base.sub(func, "users", 0o1777, Rule::Shared)?;
        users.sub(func, &uid.to_string(), 0o755, Rule::Owner(uid))
    }
}

/// The verified `BASE/sys` (1777, like `/tmp`: anyone may publish, nobody
/// may remove another user's node), made if missing.
pub fn open_sys_dir(func: &str) -> Result<Dir, Errno> {
    Dir::base(func)?.sub(func, "sys", 0o1777, Rule::Shared)
}

/// Does the path fit in `sun_path`?
pub fn check_path_len(path: &Path) -> Result<(), Errno> {
    if path.as_os_str().len() > SUN_PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

fn sockaddr(path: &[u8]) -> Result<(libc::sockaddr_un, libc::socklen_t), Errno> {
    if path.len() > SUN_PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sa.sun_path.iter_mut().zip(path) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + path.len() + 1;
    Ok((sa, len as libc::socklen_t))
}

fn unix_socket(nonblock: bool) -> Result<OwnedFd, Errno> {
    let flags =
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblock { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, flags, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connect a blocking stream socket to `path`.
pub fn connect(path: &Path) -> Result<OwnedFd, Errno> {
    let (sa, len) = sockaddr(path.as_os_str().as_bytes())?;
    let fd = unix_socket(false)?;
    loop {
        // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
        let r = unsafe { libc::connect(fd.as_raw_fd(), (&raw const sa).cast(), len) };
        if r == 0 {
            return Ok(fd);
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

/// Is a live service listening at `path`? (A stale socket refuses.)
pub fn is_live(path: &Path) -> bool {
    let Ok((sa, len)) = sockaddr(path.as_os_str().as_bytes()) else {
        return false;
    };
    let Ok(fd) = unix_socket(true) else {
        return false;
    };
    // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
    let r = unsafe { libc::connect(fd.as_raw_fd(), (&raw const sa).cast(), len) };
    // A full backlog (EAGAIN) still means somebody listens.
    r == 0 || Errno::last() == Errno::EAGAIN
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
    /// Lock `dir` through a descriptor of its own (an open file of its
    /// own: two services of one process exclude each other too).
    fn new(dir: &Dir) -> Result<DirLock, Errno> {
        // SAFETY: valid descriptor; "." names the directory itself.
        let fd = unsafe {
            libc::openat(
                dir.fd.as_raw_fd(),
                c".".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: `fd` is new and ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: flock on a descriptor we own; released by `drop`.
        while unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) } != 0 {
            let e = Errno::last();
            if e != Errno::EINTR {
                return Err(e);
            }
        }
        Ok(DirLock(fd))
    }
}

static TEMP_SEQ: AtomicU32 = AtomicU32::new(0);

/// The prefix of the temporary name a service is bound under before it
/// is renamed to its own (`.caps.PID.N`).
pub const TEMP_PREFIX: &str = ".caps.";

/// The temporary name `.caps.PID.N` of process `pid`'s `seq`th service.
fn temp_name(pid: u32, seq: u32) -> String {
    format!("{TEMP_PREFIX}{pid}.{seq}")
}

/// The pid in a temporary name `.caps.PID.N` (`None`: not one).
pub fn temp_pid(file: &[u8]) -> Option<i32> {
    let rest = file.strip_prefix(TEMP_PREFIX.as_bytes())?;
    let s = std::str::from_utf8(rest).ok()?;
    let (pid, seq) = s.split_once('.')?;
    seq.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Bind `fd` to `tmp` in `dir`. Through `/proc/self/fd/N/tmp` the address
/// is short whatever the directory's path (so a final path of up to 107
/// bytes always works) and resolves to the verified directory itself;
/// without `/proc`, through the directory's path.
fn bind_in(fd: RawFd, dir: &Dir, tmp: &str) -> Result<(), Errno> {
    let via_proc = format!("/proc/self/fd/{}/{tmp}", dir.fd.as_raw_fd());
    let mut via_path = dir.path.as_os_str().as_bytes().to_vec();
    via_path.push(b'/');
    via_path.extend_from_slice(tmp.as_bytes());
    let mut last = Errno::ENOENT;
    for addr in [via_proc.as_bytes(), &via_path[..]] {
        let (sa, len) = match sockaddr(addr) {
            Ok(s) => s,
            Err(e) => {
                last = e;
                continue;
            }
        };
        // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
        if unsafe { libc::bind(fd, (&raw const sa).cast(), len) } == 0 {
            return Ok(());
        }
        last = Errno::last();
        if last != Errno::ENOENT && last != Errno::ENOTDIR {
            return Err(last);
        }
    }
    Err(last)
}

/// Create the listening socket of service `name` in `dir` with exactly
/// `mode`, failing with `EEXIST` when `conflict()`, which runs while the
/// directory is locked against other service creations. A node of
/// another user at the final name is not replaced (`EUNSAFE`), nor a
/// node of ours that is not a socket (`EEXIST`), each with one log line
/// under `func`.
pub fn listen_in(
    func: &str,
    dir: Dir,
    name: &[u8],
    mode: u32,
    conflict: impl FnOnce() -> bool,
) -> Result<Listener, Errno> {
    let path = dir.path.join(std::ffi::OsStr::from_bytes(name));
    let r = publish(func, dir, name, &path, mode, conflict);
    match &r {
        Ok(_) => crate::trace!(
            "caps",
            "service created: {} (mode {mode:o})",
            path.display()
        ),
        Err(e) => crate::trace!("caps", "cannot create service {}: {}", path.display(), *e),
    }
    r
}

/// The work of [`listen_in`]; `path` is `dir`'s path joined with `name`.
fn publish(
    func: &str,
    dir: Dir,
    name: &[u8],
    path: &Path,
    mode: u32,
    conflict: impl FnOnce() -> bool,
) -> Result<Listener, Errno> {
    check_path_len(path)?;
    let cname = cstr(name)?;
    let dfd = dir.fd.as_raw_fd();
    let _lock = DirLock::new(&dir)?;
    if conflict() {
        return Err(Errno::EEXIST);
    }
    if let Some(st) = lstat_at(dfd, &cname) {
        let me = euid();
        if st.st_uid != me && me != 0 {
            warn!(
                func,
                "{}: a {} planted by uid {}: not replaced (an administrator may remove it)",
                path.display(),
                kind(st.st_mode),
                st.st_uid
            );
            return Err(EUNSAFE);
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            warn!(
                func,
                "{}: a {} of uid {} is there, not a service socket: not replaced",
                path.display(),
                kind(st.st_mode),
                st.st_uid
            );
            return Err(Errno::EEXIST);
        }
    }
    if let Some(fd) = publish_in_place(dfd, &cname, path, mode)? {
        return Ok(Listener {
            fd,
            path: path.to_path_buf(),
            node: node_of(dfd, &cname)?,
            dir,
            name: cname,
        });
    }
    let tmp = temp_name(std::process::id(), TEMP_SEQ.fetch_add(1, Ordering::Relaxed));
    let ctmp = cstr(tmp.as_bytes())?;
    let fd = unix_socket(true)?;
    // SAFETY: a name in a directory we verified and locked; a leftover of
    // a previous process with the same pid and sequence is removed.
    unsafe { libc::unlinkat(dfd, ctmp.as_ptr(), 0) };
    let result = (|| {
        bind_in(fd.as_raw_fd(), &dir, &tmp)?;
        // SAFETY: valid descriptor and name; only we (or root) may
        // replace the node we just bound in this directory.
        if unsafe { libc::fchmodat(dfd, ctmp.as_ptr(), mode & 0o7777, 0) } != 0 {
            return Err(Errno::last());
        }
        // SAFETY: `fd` is a bound stream socket.
        if unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) } != 0 {
            return Err(Errno::last());
        }
        // SAFETY: both names are relative to our verified directory;
        // rename replaces atomically.
        if unsafe { libc::renameat(dfd, ctmp.as_ptr(), dfd, cname.as_ptr()) } != 0 {
            return Err(Errno::last());
        }
        Ok(())
    })();
    if let Err(e) = result {
        // SAFETY: removing our own temporary node.
        unsafe { libc::unlinkat(dfd, ctmp.as_ptr(), 0) };
        return Err(e);
    }
    Ok(Listener {
        fd,
        path: path.to_path_buf(),
        node: node_of(dfd, &cname)?,
        dir,
        name: cname,
    })
}

fn node_of(dfd: RawFd, name: &CString) -> Result<(u64, u64), Errno> {
    let st = lstat_at(dfd, name).ok_or(Errno::ENOENT)?;
    Ok((st.st_dev, st.st_ino))
}

/// Where no live service holds the name, bind under the final `path`
/// itself (the kernel reports a socket by the address it was bound to:
/// `ss -xlp`, `/proc/net/unix`, lsof), with the directory `dfd` locked:
/// a dead service's node is removed first; until `listen` the node
/// refuses connections, as a dead service's does, so no client reaches a
/// half-made service. `None`: the name is live (replacing a live service
/// takes the atomic rename, under which clients always find one) or the
/// path did not lead to a node of ours in `dfd`; bind-then-rename then.
fn publish_in_place(
    dfd: RawFd,
    name: &CString,
    path: &Path,
    mode: u32,
) -> Result<Option<OwnedFd>, Errno> {
    if lstat_at(dfd, name).is_some() {
        if is_live(path) {
            return Ok(None);
        }
        // SAFETY: a dead socket node of ours (or root's to replace), in
        // the directory we verified and locked.
        unsafe { libc::unlinkat(dfd, name.as_ptr(), 0) };
    }
    let (sa, len) = sockaddr(path.as_os_str().as_bytes())?;
    let fd = unix_socket(true)?;
    // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), len) } != 0 {
        return Ok(None);
    }
    // The directories on the way are the verified ones (nobody else may
    // rename them), so the node is in `dfd`; make sure.
    match lstat_at(dfd, name) {
        Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFSOCK && st.st_uid == euid() => {}
        _ => return Ok(None),
    }
    // SAFETY: our node in our directory; `fd` is a bound stream socket.
    let ready = unsafe {
        libc::fchmodat(dfd, name.as_ptr(), mode & 0o7777, 0) == 0
            && libc::listen(fd.as_raw_fd(), BACKLOG) == 0
    };
    if !ready {
        let e = Errno::last();
        // SAFETY: removing the node we just bound.
        unsafe { libc::unlinkat(dfd, name.as_ptr(), 0) };
        return Err(e);
    }
    // The same mode again, now that it listens: the inotify event
    // (IN_ATTRIB) wakes the `CAPF_WAITSVC` clients, which the node's
    // creation may have woken too early (as the rename wakes them when
    // the service is ready).
    // SAFETY: our node in our directory.
    unsafe { libc::fchmodat(dfd, name.as_ptr(), mode & 0o7777, 0) };
    Ok(Some(fd))
}

/// A service's listening socket and the filesystem node it was published
/// as.
pub struct Listener {
    pub fd: OwnedFd,
    pub path: PathBuf,
    dir: Dir,
    name: CString,
    node: (u64, u64),
}

impl Listener {
    /// Remove the socket node if it still is ours (a later service may
    /// have replaced it).
    pub fn unlink(&self) {
        let dfd = self.dir.fd.as_raw_fd();
        if lstat_at(dfd, &self.name).map(|st| (st.st_dev, st.st_ino)) == Some(self.node) {
            // SAFETY: valid descriptor and name.
            unsafe { libc::unlinkat(dfd, self.name.as_ptr(), 0) };
            crate::trace!("caps", "service removed: {}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn temporary_names_round_trip() {
        let t = temp_name(123, 4);
        assert_eq!(t, ".caps.123.4");
        assert_eq!(temp_pid(t.as_bytes()), Some(123));
        assert_eq!(temp_pid(b".caps.123"), None);
        assert_eq!(temp_pid(b".caps.x.4"), None);
        assert_eq!(temp_pid(b"svc"), None);
    }

    #[test]
    fn names_that_escape_or_overflow_are_refused() {
        for bad in [&b""[..], b"a/b", b"..", b".", b"/etc"] {
            assert_eq!(check_name(bad), Err(Errno::EINVAL), "{bad:?}");
        }
        assert!(check_name(b"test").is_ok());
        assert!(check_name(b"...x").is_ok());
        assert_eq!(service_path(&[b'x'; 200], 1000), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn paths_follow_the_original_layout() {
        let root = service_path(b"svc", 0).unwrap();
        assert!(root.ends_with("root/svc"), "{}", root.display());
        let user = service_path(b"svc", 1234).unwrap();
        assert!(user.ends_with("users/1234/svc"), "{}", user.display());
    }

    fn open_dir(path: &Path) -> Dir {
        let c = cpath(path).unwrap();
        // SAFETY: valid path; checked.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        assert!(fd >= 0);
        Dir {
            // SAFETY: new descriptor.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_owned(),
        }
    }

    fn listen(path: &Path, mode: u32, excl: bool) -> Result<Listener, Errno> {
        let dir = open_dir(path.parent().unwrap());
        let name = path.file_name().unwrap().as_bytes();
        listen_in("test", dir, name, mode, || excl && is_live(path))
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
        assert_eq!(listen(&path, 0o600, true).err(), Some(Errno::EEXIST));
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
        // a node that is not a socket is never replaced
        std::fs::write(&path, "data").unwrap();
        assert_eq!(listen(&path, 0o600, false).err(), Some(Errno::EEXIST));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directory_rules() {
        let st = |uid: u32, mode: u32| {
            // SAFETY: stat is plain data.
            let mut s: libc::stat = unsafe { std::mem::zeroed() };
            s.st_uid = uid;
            s.st_mode = libc::S_IFDIR | mode;
            s
        };
        let me = euid();
        let other = if me == 0 { 1234 } else { me + 1 };
        assert_eq!(Rule::Owner(other).broken(&st(other, 0o755)), None);
        assert!(Rule::Owner(other).broken(&st(other, 0o777)).is_some());
        assert!(Rule::Owner(other).broken(&st(other + 1, 0o755)).is_some());
        assert_eq!(Rule::Shared.broken(&st(0, 0o1777)), None);
        assert!(Rule::Shared.broken(&st(0, 0o777)).is_some());
        assert!(Rule::Shared.broken(&st(other, 0o1777)).is_some());
        assert_eq!(Rule::Root.broken(&st(0, 0o755)), None);
        assert!(Rule::Root.broken(&st(0, 0o775)).is_some());
        assert!(Rule::Base.broken(&st(other, 0o755)).is_some());
        assert_eq!(Rule::Base.broken(&st(me, 0o777)), None);
    }
}
