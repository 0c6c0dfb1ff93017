//! Services seen from outside, for `capsctl`: the socket nodes under the
//! rendezvous directory, what answers at each, and the removal of the
//! nodes of dead services.
//!
//! A probe connects, reads the listener's credentials from the kernel
//! (`SO_PEERCRED`), sends the client hello of the node's face and waits a
//! moment for the server's: an accepting hello is `Alive`, a refusing one
//! or a closed connection `Refusing`, silence `Busy` (a v2 service answers
//! only while its program is in a `caps_sys_*` call). It then closes,
//! having sent no request: to the service it is a client that left at
//! once, which it neither logs nor shows the application.
//!
//! Everything here reports `std::io::Error`s: no errno type of the
//! services' own is involved.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod session;

pub use session::{AskError, Session, strerror};

use super::cred::Cred;
use super::rendezvous::temp_pid;
use super::sys::parse_node;
use super::wire::{HELLO_LEN, Hello, HelloKind, MAX_MSGSIZE, VERSION, VERSION_SYS};
use crate::abi::{CAPF_GROUP, CAPF_USER, CAPF_WORLD};

/// Which API published a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    /// `caps_service` (`BASE/root/NAME`, `BASE/users/UID/NAME`).
    V1,
    /// `caps_sys_service` (`BASE/sys/NAME,UID,GID`).
    V2,
}

/// One socket node under the rendezvous directory.
#[derive(Clone, Debug)]
pub struct Node {
    pub face: Face,
    /// The directory it is in.
    pub dir: PathBuf,
    /// Its file name.
    pub file: OsString,
    /// The service name (v2: the file name less its keys).
    pub name: Vec<u8>,
    /// v1: the uid whose directory holds it.
    pub dir_uid: Option<u32>,
    /// v2: the uid and gid it is registered for (`None`: any).
    pub keys: Option<(Option<u32>, Option<u32>)>,
    /// A temporary `.caps.PID.N` node: the pid that made it.
    pub temp_pid: Option<i32>,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`st_mode & 07777`).
    pub mode: u32,
    /// Seconds since the epoch of its last change.
    pub mtime: i64,
    dev_ino: (u64, u64),
}

impl Node {
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.file)
    }

    /// May a server with these credentials publish this node (the rule a
    /// client applies before it speaks: v1, the directory's uid or root;
    /// v2, `Cred::may_serve` of the keys)?
    pub fn may_be_served_by(&self, c: &Cred) -> bool {
        match (self.face, self.keys) {
            (Face::V2, Some((u, g))) => c.may_serve(u, g),
            _ => c.uid == 0 || Some(c.uid) == self.dir_uid,
        }
    }
}

/// Every socket node under `base` (`root/`, `users/UID/`, `sys/`), in
/// directory order and then by name. Directories that cannot be read
/// are passed over; links are not followed.
pub fn scan(base: &Path) -> Vec<Node> {
    let mut out = Vec::new();
    scan_dir(&base.join("root"), Face::V1, Some(0), &mut out);
    if let Ok(rd) = std::fs::read_dir(base.join("users")) {
        let mut uids: Vec<(u32, PathBuf)> = rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
            .collect();
        uids.sort();
        for (uid, dir) in uids {
            scan_dir(&dir, Face::V1, Some(uid), &mut out);
        }
    }
    scan_dir(&base.join("sys"), Face::V2, None, &mut out);
    out
}

fn scan_dir(dir: &Path, face: Face, dir_uid: Option<u32>, out: &mut Vec<Node>) {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut found: Vec<Node> = Vec::new();
    for e in rd.flatten() {
        let Ok(md) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if md.mode() & libc::S_IFMT != libc::S_IFSOCK {
            continue;
        }
        let file = e.file_name();
        let bytes = file.as_bytes();
        let temp = temp_pid(bytes);
        let (name, keys) = match (face, temp) {
            (Face::V2, None) => match parse_node(bytes) {
                Some((n, u, g)) => (n.to_vec(), Some((u, g))),
                None => (bytes.to_vec(), None),
            },
            _ => (bytes.to_vec(), None),
        };
        found.push(Node {
            face,
            dir: dir.to_path_buf(),
            name,
            dir_uid,
            keys,
            temp_pid: temp,
            uid: md.uid(),
            gid: md.gid(),
            mode: md.mode() & 0o7777,
            mtime: md.mtime(),
            dev_ino: (md.dev(), md.ino()),
            file,
        });
    }
    found.sort_by(|a, b| a.file.cmp(&b.file));
    out.extend(found);
}

/// Does process `pid` exist (perhaps as another user's)?
pub fn pid_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// What answered at a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// The service accepted our hello.
    Alive,
    /// Connected (somebody listens) but no hello came in time, or the
    /// backlog is full: alive, not answering now.
    Busy,
    /// Connecting is not permitted (`EACCES`), the service refused our
    /// hello (its status), or it closed the connection on us.
    Refusing(i32),
    /// Nobody listens (`ECONNREFUSED`): the node of a dead service.
    Stale,
    /// The listener may not publish this node (another user's socket
    /// under this name): a client ignores it.
    Impostor,
    /// The listener does not speak this face's protocol.
    Foreign,
    /// Anything else (the errno): e.g. the node vanished.
    Error(i32),
}

impl State {
    /// The word `capsctl list` prints.
    pub fn word(&self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Busy => "busy",
            State::Refusing(_) => "refusing",
            State::Stale => "stale",
            State::Impostor => "impostor",
            State::Foreign => "foreign",
            State::Error(_) => "error",
        }
    }
}

/// The outcome of probing one node.
#[derive(Clone, Debug)]
pub struct Probe {
    pub state: State,
    /// The listener's credentials (`SO_PEERCRED`), when connected.
    pub server: Option<Cred>,
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn sockaddr(path: &[u8]) -> Option<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if path.len() >= sa.sun_path.len() {
        return None;
    }
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sa.sun_path.iter_mut().zip(path) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + path.len() + 1;
    Some((sa, len as libc::socklen_t))
}

/// Connect a non-blocking stream socket to `path`.
fn connect_nb(path: &[u8]) -> Result<OwnedFd, i32> {
    let (sa, len) = sockaddr(path).ok_or(libc::ENAMETOOLONG)?;
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    loop {
        // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
        if unsafe { libc::connect(fd.as_raw_fd(), (&raw const sa).cast(), len) } == 0 {
            return Ok(fd);
        }
        match errno() {
            libc::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// Read what the peer sent and we do not want, then close: closing with
/// unread input would reset the connection.
fn drain_close(fd: OwnedFd) {
    let mut sink = [0u8; 512];
    // SAFETY: `sink` is writable for its length; the socket is ours.
    while unsafe {
        libc::recv(
            fd.as_raw_fd(),
            sink.as_mut_ptr().cast(),
            sink.len(),
            libc::MSG_DONTWAIT,
        )
    } > 0
    {}
}

/// A probe under way.
struct Pending {
    fd: OwnedFd,
    got: [u8; HELLO_LEN],
    n: usize,
    version: u16,
}

/// Probe every node at once, waiting at most `wait` for the hellos.
pub fn probe_all(nodes: &[Node], wait: Duration) -> Vec<Probe> {
    let mut out: Vec<Probe> = Vec::with_capacity(nodes.len());
    let mut pending: Vec<(usize, Pending)> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let (version, status) = match node.face {
            Face::V1 => (VERSION, 0),
            Face::V2 => (VERSION_SYS, (CAPF_USER | CAPF_GROUP | CAPF_WORLD) as u32),
        };
        let fd = match connect_nb(node.path().as_os_str().as_bytes()) {
            Ok(fd) => fd,
            Err(e) => {
                out.push(Probe {
                    state: match e {
                        libc::ECONNREFUSED => State::Stale,
                        libc::EAGAIN => State::Busy,
                        libc::EACCES | libc::EPERM => State::Refusing(e),
                        e => State::Error(e),
                    },
                    server: None,
                });
                continue;
            }
        };
        let cred = match Cred::of_peer(fd.as_raw_fd()) {
            Ok(c) => c,
            Err(e) => {
                out.push(Probe {
                    state: State::Error(e.0),
                    server: None,
                });
                continue;
            }
        };
        if !node.may_be_served_by(&cred) {
            // As a client would, say nothing to it.
            out.push(Probe {
                state: State::Impostor,
                server: Some(cred),
            });
            continue;
        }
        let hello = Hello {
            version,
            kind: HelloKind::Client,
            max_msgsize: MAX_MSGSIZE as u32,
            status,
        }
        .encode();
        // SAFETY: a 16-byte buffer; MSG_NOSIGNAL keeps SIGPIPE away. A
        // fresh socket's buffer takes 16 bytes at once.
        let sent = unsafe {
            libc::send(
                fd.as_raw_fd(),
                hello.as_ptr().cast(),
                hello.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        out.push(Probe {
            state: State::Busy,
            server: Some(cred),
        });
        if sent != HELLO_LEN as isize {
            out[i].state = State::Refusing(errno());
            continue;
        }
        pending.push((
            i,
            Pending {
                fd,
                got: [0; HELLO_LEN],
                n: 0,
                version,
            },
        ));
    }
    let until = Instant::now() + wait;
    while !pending.is_empty() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfds: Vec<libc::pollfd> = pending
            .iter()
            .map(|(_, p)| libc::pollfd {
                fd: p.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `pfds` holds `len` valid pollfds.
        let r = unsafe {
            libc::poll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                left.as_millis().clamp(1, i32::MAX as u128) as i32,
            )
        };
        if r < 0 && errno() != libc::EINTR {
            break;
        }
        let mut k = 0;
        for pfd in &pfds {
            let (i, p) = &mut pending[k];
            let done = pfd.revents != 0 && read_hello(p).map(|s| out[*i].state = s).is_some();
            if done {
                let (_, p) = pending.remove(k);
                drain_close(p.fd);
            } else {
                k += 1;
            }
        }
    }
    for (_, p) in pending {
        drain_close(p.fd);
    }
    out
}

/// Read more of the server's hello: the state once it is complete or the
/// connection ended, `None` while more is to come.
fn read_hello(p: &mut Pending) -> Option<State> {
    loop {
        // SAFETY: `got[n..]` is writable for its length.
        let r = unsafe {
            libc::recv(
                p.fd.as_raw_fd(),
                p.got[p.n..].as_mut_ptr().cast(),
                HELLO_LEN - p.n,
                libc::MSG_DONTWAIT,
            )
        };
        if r == 0 {
            return Some(State::Refusing(libc::ECONNRESET));
        }
        if r < 0 {
            return match errno() {
                libc::EINTR => continue,
                libc::EAGAIN => None,
                e => Some(State::Refusing(e)),
            };
        }
        p.n += r as usize;
        if p.n < HELLO_LEN {
            continue;
        }
        return Some(match Hello::decode(&p.got, HelloKind::Server, p.version) {
            Err(_) => State::Foreign,
            Ok(h) if h.status == 0 => State::Alive,
            Ok(h) => State::Refusing(h.status as i32),
        });
    }
}

/// One directory of the rendezvous tree, opened without following links
/// below `BASE` and locked against service creation (as
/// `rendezvous::listen_in` locks it) while it is held.
pub struct LockedDir {
    fd: OwnedFd,
}

impl Drop for LockedDir {
    fn drop(&mut self) {
        // SAFETY: flock on the descriptor we own.
        unsafe { libc::flock(self.fd.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn openat_dir(at: RawFd, name: &[u8], nofollow: bool) -> io::Result<OwnedFd> {
    let c = cstring(name)?;
    let flags = libc::O_RDONLY
        | libc::O_DIRECTORY
        | libc::O_CLOEXEC
        | if nofollow { libc::O_NOFOLLOW } else { 0 };
    // SAFETY: a valid descriptor (or AT_FDCWD) and name; checked.
    let fd = unsafe { libc::openat(at, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl LockedDir {
    /// Open `base` (a link there is the administrator's choice), then
    /// each of `below` with `O_NOFOLLOW`, and take the directory's lock,
    /// waiting at most `wait` for a service creation to finish.
    pub fn open(base: &Path, below: &[&OsStr], wait: Duration) -> io::Result<LockedDir> {
        let mut fd = openat_dir(libc::AT_FDCWD, base.as_os_str().as_bytes(), false)?;
        for part in below {
            fd = openat_dir(fd.as_raw_fd(), part.as_bytes(), true)?;
        }
        let until = Instant::now() + wait;
        // SAFETY: flock on a descriptor we own; released by `drop`.
        while unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = errno();
            if e != libc::EWOULDBLOCK && e != libc::EINTR {
                return Err(io::Error::from_raw_os_error(e));
            }
            if Instant::now() >= until {
                return Err(io::Error::from_raw_os_error(libc::EWOULDBLOCK));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(LockedDir { fd })
    }
}

/// Why a node was not removed.
#[derive(Debug)]
pub enum Kept {
    /// A service listens at it (the state the probe found).
    Live(State),
    /// The caller neither owns it nor is root.
    NotOwner,
    /// It changed since it was listed (another node is there now).
    Changed,
    /// A temporary node whose maker still runs.
    InCreation,
    Error(io::Error),
}

/// Remove `node` if it is the node of a dead service (or a temporary
/// node of a dead process) that the caller owns (root: any): under the
/// directory's lock, the node must still be the socket that was listed,
/// and nobody may listen at it right then. `base` is the rendezvous
/// directory `node` was found under.
pub fn remove_stale(base: &Path, node: &Node) -> Result<(), Kept> {
    let me = Cred::of_self().uid;
    if me != 0 && node.uid != me {
        return Err(Kept::NotOwner);
    }
    if node.temp_pid.is_some_and(pid_exists) {
        return Err(Kept::InCreation);
    }
    let rel = node.dir.strip_prefix(base).map_err(|_| Kept::Changed)?;
    let parts: Vec<&OsStr> = rel.iter().collect();
    let dir = LockedDir::open(base, &parts, Duration::from_secs(5)).map_err(Kept::Error)?;
    let dfd = dir.fd.as_raw_fd();
    let cname = cstring(node.file.as_bytes()).map_err(Kept::Error)?;
    // SAFETY: stat is plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, name and buffer.
    if unsafe { libc::fstatat(dfd, cname.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(Kept::Error(io::Error::last_os_error()));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK || (st.st_dev, st.st_ino) != node.dev_ino {
        return Err(Kept::Changed);
    }
    // Probe through the locked directory itself (`/proc/self/fd/N/...`
    // resolves to it), by its path without /proc.
    let mut via_proc = format!("/proc/self/fd/{dfd}/").into_bytes();
    via_proc.extend_from_slice(node.file.as_bytes());
    let r = match connect_nb(&via_proc) {
        Err(libc::ENOENT) | Err(libc::ENOTDIR) | Err(libc::ENAMETOOLONG) => {
            connect_nb(node.path().as_os_str().as_bytes())
        }
        r => r,
    };
    match r {
        Err(libc::ECONNREFUSED) => {}
        Ok(fd) => {
            drain_close(fd);
            return Err(Kept::Live(State::Alive));
        }
        Err(libc::EAGAIN) => return Err(Kept::Live(State::Busy)),
        Err(e @ (libc::EACCES | libc::EPERM)) => return Err(Kept::Live(State::Refusing(e))),
        Err(e) => return Err(Kept::Error(io::Error::from_raw_os_error(e))),
    }
    // SAFETY: a name in the directory we opened and locked.
    if unsafe { libc::unlinkat(dfd, cname.as_ptr(), 0) } != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Kept::NotOwner,
            _ => Kept::Error(e),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_listener_is_stale_and_removed_a_live_one_alive_and_kept() {
        let base = std::env::temp_dir().join(format!("caps-probe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let me = Cred::of_self();
        let dir = if me.uid == 0 {
            base.join("root")
        } else {
            base.join("users").join(me.uid.to_string())
        };
        std::fs::create_dir_all(&dir).unwrap();
        let live = std::os::unix::net::UnixListener::bind(dir.join("live")).unwrap();
        drop(std::os::unix::net::UnixListener::bind(dir.join("dead")).unwrap());
        let nodes = scan(&base);
        let names: Vec<&[u8]> = nodes.iter().map(|n| &n.name[..]).collect();
        assert_eq!(names, [&b"dead"[..], b"live"]);
        let probes = probe_all(&nodes, Duration::from_millis(200));
        assert_eq!(probes[0].state, State::Stale);
        // a listener that never answers the hello
        assert_eq!(probes[1].state, State::Busy);
        assert_eq!(probes[1].server.as_ref().map(|c| c.pid), Some(me.pid));
        assert!(matches!(remove_stale(&base, &nodes[1]), Err(Kept::Live(_))));
        assert!(remove_stale(&base, &nodes[0]).is_ok());
        assert!(!dir.join("dead").exists() && dir.join("live").exists());
        drop(live);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
