//! Peer credentials from the kernel, and the access rule of a service.
//!
//! The server reads the client's pid, uid, gid and supplementary groups
//! with `SO_PEERCRED` and `SO_PEERGROUPS`: values the kernel recorded when
//! the client connected, which the client cannot forge.

use std::os::fd::RawFd;

use super::errno::Errno;

use crate::abi::{
    CAPF_GROUP, CAPF_USER, CAPF_WORLD, CAPS_ANYCLIENT, CAPS_GROUP, CAPS_MAXGROUPS, CAPS_USER,
    CAPS_WORLD, caps_cred,
};

/// Credentials of a peer (what goes into `struct caps_cred`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cred {
    pub pid: i32,
    /// Effective uid at connect time (`SO_PEERCRED` reports the effective
    /// ids; it is stored in both `uid` and `euid`).
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, as many as the kernel reports.
    pub groups: Vec<u32>,
}

impl Cred {
    /// Read the credentials of the peer of connected socket `fd`.
    pub fn of_peer(fd: RawFd) -> Result<Cred, Errno> {
        let mut uc = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `uc` is a writable ucred of `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut uc).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(Errno::last());
        }
        Ok(Cred {
            pid: uc.pid,
            uid: uc.uid,
            gid: uc.gid,
            groups: peer_groups(fd),
        })
    }

    /// May a service run with these credentials publish itself for
    /// `uid` and `gid` (`None`: not registered)? The rule the kernel
    /// applied at registration: root may claim any, others only their own
    /// effective uid and their own groups. A client checks it on the
    /// service it reached, since anyone may create a socket node in a
    /// world-writable rendezvous directory.
    pub fn may_serve(&self, uid: Option<u32>, gid: Option<u32>) -> bool {
        self.uid == 0
            || (uid.is_none_or(|u| u == self.uid)
                && gid.is_none_or(|g| g == self.gid || self.groups.contains(&g)))
    }

    /// Our own credentials (what a peer would see of us).
    pub fn of_self() -> Cred {
        // SAFETY: these calls cannot fail.
        let (pid, uid, gid) = unsafe { (libc::getpid(), libc::geteuid(), libc::getegid()) };
        // SAFETY: with size 0 getgroups only counts.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) }.max(0) as usize;
        let mut groups = vec![0 as libc::gid_t; n];
        // SAFETY: `groups` has room for `n` entries.
        let got = unsafe { libc::getgroups(n as i32, groups.as_mut_ptr()) }.max(0) as usize;
        groups.truncate(got);
        Cred {
            pid,
            uid,
            gid,
            groups,
        }
    }

    /// Fill a C `struct caps_cred` (at most `CAPS_MAXGROUPS` groups).
    pub fn to_c(&self, out: &mut caps_cred) {
        out.pid = self.pid;
        out.uid = self.uid;
        out.euid = self.uid;
        out.gid = self.gid;
        out.cacheid = 0;
        let n = self.groups.len().min(CAPS_MAXGROUPS as usize);
        out.groups = [0; CAPS_MAXGROUPS as usize];
        out.groups[..n].copy_from_slice(&self.groups[..n]);
        out.ngroups = n as i32;
    }

    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// `SO_PEERGROUPS` (Linux 4.13+); empty when the kernel does not know it.
fn peer_groups(fd: RawFd) -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is writable for `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(count);
            return groups;
        }
        let e = Errno::last();
        if e == Errno::ERANGE && count > groups.len() {
            groups.resize(count, 0);
            continue;
        }
        return Vec::new();
    }
}

/// Who may use a service: its owner, its group, and the `CAPS_*` flags
/// given to `caps_service()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub owner_uid: u32,
    pub gid: u32,
    pub flags: i32,
}

impl Access {
    /// The rule (recorded in docs/compat.md):
    /// * none of `CAPS_USER|CAPS_GROUP|CAPS_WORLD`: no check beyond the
    ///   socket's file mode (the 2003 behaviour, which `caps1` relies on);
    /// * `CAPS_WORLD`: anyone;
    /// * `CAPS_USER`: a peer whose uid is the service owner's;
    /// * `CAPS_GROUP`: a peer whose gid or a supplementary group is the
    ///   service's `gid` (the owner's gid when `caps_service()` got -1).
    ///
    /// The flags add up: `CAPS_USER|CAPS_GROUP` admits either.
    pub fn admits(&self, peer: &Cred) -> bool {
        let f = self.flags;
        f & CAPS_ANYCLIENT == 0
            || f & CAPS_WORLD != 0
            || (f & CAPS_USER != 0 && peer.uid == self.owner_uid)
            || (f & CAPS_GROUP != 0 && peer.in_group(self.gid))
    }
}

/// Who may connect to a `caps_sys_service()` service (CAPS v2): its
/// registration `uid`/`gid` (`None` for -1) and flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysAccess {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub flags: i32,
}

impl SysAccess {
    /// The 2004 kernel's rule: a client asking with `client_flags` is
    /// admitted when, among the flags both sides give, `CAPF_USER` and its
    /// uid is the service's, or `CAPF_GROUP` and it is a member of the
    /// service's group, or `CAPF_WORLD`. A -1 uid or gid matches nobody.
    pub fn admits(&self, peer: &Cred, client_flags: i32) -> bool {
        let f = self.flags & client_flags;
        f & CAPF_WORLD != 0
            || (f & CAPF_USER != 0 && self.uid == Some(peer.uid))
            || (f & CAPF_GROUP != 0 && self.gid.is_some_and(|g| peer.in_group(g)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Cred {
        Cred {
            pid: 1,
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn access_rule() {
        let svc = |flags| Access {
            owner_uid: 1000,
            gid: 50,
            flags,
        };
        let owner = peer(1000, 1000, &[]);
        let member = peer(2000, 2000, &[7, 50]);
        let primary = peer(2001, 50, &[]);
        let stranger = peer(3000, 3000, &[9]);
        for p in [&owner, &member, &stranger] {
            assert!(svc(0).admits(p));
            assert!(svc(CAPS_WORLD).admits(p));
        }
        assert!(svc(CAPS_USER).admits(&owner));
        assert!(!svc(CAPS_USER).admits(&member));
        assert!(svc(CAPS_GROUP).admits(&member));
        assert!(svc(CAPS_GROUP).admits(&primary));
        assert!(!svc(CAPS_GROUP).admits(&owner));
        assert!(!svc(CAPS_GROUP).admits(&stranger));
        assert!(svc(CAPS_USER | CAPS_GROUP).admits(&owner));
        assert!(svc(CAPS_USER | CAPS_GROUP).admits(&member));
        assert!(!svc(CAPS_USER | CAPS_GROUP).admits(&stranger));
    }

    #[test]
    fn sys_access_rule_needs_both_sides() {
        let svc = |uid, gid, flags| SysAccess { uid, gid, flags };
        let me = peer(1000, 100, &[50]);
        let all = CAPF_USER | CAPF_GROUP | CAPF_WORLD;
        assert!(svc(Some(1000), None, CAPF_USER).admits(&me, all));
        assert!(!svc(Some(1000), None, CAPF_USER).admits(&me, CAPF_GROUP));
        assert!(!svc(None, None, CAPF_USER).admits(&me, all));
        assert!(!svc(Some(1001), None, CAPF_USER).admits(&me, all));
        assert!(svc(None, Some(50), CAPF_GROUP).admits(&me, CAPF_GROUP));
        assert!(svc(None, Some(100), CAPF_GROUP).admits(&me, CAPF_GROUP));
        assert!(!svc(None, Some(7), CAPF_GROUP).admits(&me, all));
        assert!(svc(None, None, CAPF_WORLD).admits(&me, CAPF_WORLD));
        assert!(!svc(None, None, CAPF_WORLD).admits(&me, CAPF_USER));
        assert!(!svc(Some(1000), Some(100), 0).admits(&me, all));
    }

    #[test]
    fn peer_credentials_come_from_the_kernel() {
        let (a, _b) = UnixStream::pair().unwrap();
        let c = Cred::of_peer(a.as_raw_fd()).unwrap();
        let me = Cred::of_self();
        assert_eq!((c.pid, c.uid, c.gid), (me.pid, me.uid, me.gid));
        let mut cc: caps_cred = unsafe_zeroed();
        c.to_c(&mut cc);
        assert_eq!(cc.uid, me.uid);
        assert_eq!(cc.euid, me.uid);
        assert!(cc.ngroups as usize <= CAPS_MAXGROUPS as usize);
    }

    fn unsafe_zeroed() -> caps_cred {
        // SAFETY: caps_cred is plain integers.
        unsafe { std::mem::zeroed() }
    }
}
