//! What a service allows its connections: how many one peer uid may
//! hold (`Gate`), how many bytes they may have buffered (`Budget`), and
//! the timer of the hello deadline (`Timer`, for a service driven by the
//! cpu's event loop). The numbers are in `docs/wire-protocol.md`.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::caps::cred::Cred;
use crate::caps::errno::Errno;
use crate::caps::idhash::IdMap;
use crate::cpu::evloop::Token;
use crate::warn;

/// Admission of connections to one service (v1 and v2 alike): a peer uid
/// other than root's and the service owner's may hold at most `limit`
/// connections at once (a quarter of the descriptors the process may
/// open, at least 4), so one user cannot take every descriptor. A
/// connection over the limit is closed at once; one log line a second
/// at most says so.
pub(in crate::caps) struct Gate {
    owner: u32,
    limit: usize,
    by_uid: HashMap<u32, usize>,
    /// Refusals not yet logged, and when the last line was written.
    refused: u64,
    logged: Option<Instant>,
}

impl Gate {
    pub(in crate::caps) fn new(owner: u32) -> Gate {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `rl` is a writable rlimit.
        let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
            rl.rlim_cur.min(1 << 20) as usize
        } else {
            1024
        };
        Gate {
            owner,
            limit: (nofile / 4).max(4),
            by_uid: HashMap::new(),
            refused: 0,
            logged: None,
        }
    }

    /// Count a new connection of `peer`, or refuse it (false) when its
    /// uid holds `limit` already.
    pub(in crate::caps) fn admit(
        &mut self,
        func: &str,
        service: &dyn std::fmt::Display,
        peer: &Cred,
    ) -> bool {
        let exempt = peer.uid == 0 || peer.uid == self.owner;
        let n = self.by_uid.entry(peer.uid).or_insert(0);
        if !exempt && *n >= self.limit {
            self.refused += 1;
            let now = Instant::now();
            if self
                .logged
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                warn!(
                    func,
                    "{service}: uid {} holds {} connections, its limit: {} refused (last: pid {})",
                    peer.uid,
                    self.limit,
                    self.refused,
                    peer.pid
                );
                self.refused = 0;
                self.logged = Some(now);
            }
            return false;
        }
        *n += 1;
        true
    }

    /// A connection of `uid` ended.
    pub(in crate::caps) fn release(&mut self, uid: u32) {
        if let Some(n) = self.by_uid.get_mut(&uid) {
            *n -= 1;
            if *n == 0 {
                self.by_uid.remove(&uid);
            }
        }
    }
}

/// What a service (v1 or v2) may buffer for its connections, requests
/// received and not yet taken or replied plus replies not yet written:
/// this much in total...
pub(in crate::caps) const BUDGET_TOTAL: usize = 32 << 20;
/// ...and this much for the connections of one peer uid (root's and the
/// owner's count only towards the total).
pub(in crate::caps) const BUDGET_PER_UID: usize = 8 << 20;

/// The memory budget of one service (v1 and v2 alike): a connection is
/// read from only while its uid is within its share and the service
/// within its total; otherwise it waits (back-pressure: its requests stay
/// in the socket) until replies are written or requests taken.
pub(in crate::caps) struct Budget {
    owner: u32,
    total: usize,
    /// Updated on every request taken and reply sent: a cheap hash.
    by_uid: IdMap<u32, usize>,
}

impl Budget {
    pub(in crate::caps) fn new(owner: u32) -> Budget {
        Budget {
            owner,
            total: 0,
            by_uid: IdMap::default(),
        }
    }

    /// A connection of `uid` buffered `was` bytes and now buffers `now`.
    /// True when that changed something and `uid`'s connections may not
    /// be read now (what [`Budget::allows`] says, without a second
    /// lookup).
    pub(in crate::caps) fn update(&mut self, uid: u32, was: usize, now: usize) -> bool {
        if was == now {
            return false;
        }
        self.total = self.total + now - was;
        let n = self.by_uid.entry(uid).or_insert(0);
        *n = *n + now - was;
        let over_share = *n >= BUDGET_PER_UID && uid != 0 && uid != self.owner;
        if *n == 0 {
            self.by_uid.remove(&uid);
        }
        over_share || self.total >= BUDGET_TOTAL
    }

    /// Bytes buffered now for all connections.
    pub(in crate::caps) fn total(&self) -> usize {
        self.total
    }

    /// May a connection of `uid` be read from now?
    pub(in crate::caps) fn allows(&self, uid: u32) -> bool {
        self.total < BUDGET_TOTAL
            && (uid == 0
                || uid == self.owner
                || self.by_uid.get(&uid).copied().unwrap_or(0) < BUDGET_PER_UID)
    }
}

/// A one-shot monotonic timer (`timerfd`), for the hello deadline of a
/// service driven by the cpu's event loop.
pub(in crate::caps) struct Timer {
    pub(in crate::caps) fd: OwnedFd,
    pub(in crate::caps) token: Option<Token>,
    /// When it is armed to fire.
    pub(in crate::caps) at: Option<Instant>,
}

impl Timer {
    pub(in crate::caps) fn new() -> Result<Timer, Errno> {
        // SAFETY: plain timerfd_create call.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(Errno::last());
        }
        Ok(Timer {
            // SAFETY: a new descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            token: None,
            at: None,
        })
    }

    /// Fire at `at` (`None`: disarm).
    pub(in crate::caps) fn arm(&mut self, at: Option<Instant>) {
        self.at = at;
        let d = at.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: our timerfd and a valid itimerspec.
        unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    /// Consume the expiry (the descriptor is level-triggered).
    pub(in crate::caps) fn clear(&self) {
        let mut v = 0u64;
        // SAFETY: an 8-byte read into a valid u64.
        unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut v).cast(), 8) };
    }
}
