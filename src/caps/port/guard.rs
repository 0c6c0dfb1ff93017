//! What keeps a v1 service safe from its peers and from `fork()`: the
//! hello deadline sweep, the memory budget's accounting and
//! back-pressure, and the rule for ports inherited across `fork()`. The
//! limits themselves live in the connection layer (`caps::conn`,
//! shared with v2).

use std::os::fd::AsRawFd;

use super::server::{remote_read, remote_shutdown};
use super::*;
use crate::caps::conn::{HelloSweep, QUIET};
use crate::warn;

/// The hello-deadline timer of service `svc`, registered with this cpu's
/// event loop (`None`, logged, if that fails: then no deadline).
///
/// # Safety
/// `svc` must be a live service port that unregisters the timer before
/// it is freed.
pub(super) unsafe fn hello_timer(svc: *mut CapsPort) -> Option<Timer> {
    let made = Timer::new().and_then(|mut t| {
        let fd = t.fd.as_raw_fd();
        let sweep = move |_| {
            // SAFETY: the registration is removed before `svc` is freed.
            unsafe { hello_sweep(svc) }
        };
        t.token = Some(evloop::register(fd, EV_IN, Box::new(sweep)).map_err(Errno)?);
        Ok(t)
    });
    match made {
        Ok(t) => Some(t),
        Err(e) => {
            warn!("caps_service", "no hello deadline: {}", e);
            None
        }
    }
}

/// The hello deadline timer fired: drop every connection of `svc` whose
/// hello is overdue (after reading what it sent meanwhile), one log line
/// for all of them; let the connections whose rings went quiet give
/// their pages back (`Transport::quiet`); re-arm for the next hello due,
/// or in `QUIET` while a connection's rings are awake.
///
/// # Safety
/// `svc` must be a live service port. Fetches `&mut` through
/// `service_of`/`connection_of`: no reference to the state of `svc` or of
/// its connections may be live across the call (see `service_of` in
/// `port/mod.rs`).
pub(super) unsafe fn hello_sweep(svc: *mut CapsPort) {
    // SAFETY: `svc` is live; listed remotes are live (shutdown unlists
    // them before they can be freed). Each reference to a port's state
    // lasts one step: reading and shutting down reach the service.
    unsafe {
        let mut sweep = {
            let Some(s) = service_of(svc) else {
                return;
            };
            if let Some(t) = s.timer.as_mut() {
                t.clear();
                t.at = None;
            }
            HelloSweep::select(s.remotes.iter().map(|&r| (r, &connection_of(r).link)))
        };
        for r in sweep.take() {
            if !listed(svc, r) {
                continue;
            }
            remote_read(r);
            if listed(svc, r) && !connection_of(r).link.hello_done() {
                sweep.dropped(&connection_of(r).link);
                remote_shutdown(r, None);
            }
        }
        let Some(s) = service_of(svc) else {
            return;
        };
        sweep.finish(&mut s.core);
        let mut awake = false;
        for &r in &s.remotes {
            let tx = &mut connection_of(r).link.tx;
            tx.quiet();
            awake |= tx.ring_awake();
        }
        let quiet_due = awake.then(|| std::time::Instant::now() + QUIET);
        let next = s
            .remotes
            .iter()
            .filter_map(|&r| connection_of(r).link.hello_due())
            .chain(quiet_due)
            .min();
        if let Some(t) = s.timer.as_mut() {
            t.arm(next);
        }
    }
}

/// Is `r` still one of `svc`'s connections?
///
/// # Safety
/// `svc` must be a live service port.
pub(super) unsafe fn listed(svc: *mut CapsPort, r: *mut CapsPort) -> bool {
    // SAFETY: per the contract.
    match unsafe { &(*svc).kind } {
        Kind::Service(s) => s.remotes.contains(&r),
        _ => false,
    }
}

/// May connection `r` be read from: within its own limits (requests held,
/// replies queued) and its service's budget?
///
/// # Safety
/// `r` must be live. Fetches `&mut` through
/// `service_of`/`connection_of`: no reference to the state of `r`, of its
/// service or of its connections may be live across the call (see
/// `service_of` in `port/mod.rs`).
pub(super) unsafe fn may_read(r: *mut CapsPort) -> bool {
    // SAFETY: `r` is live; its service, if any, too (another object).
    unsafe {
        let c = connection_of(r);
        if c.held >= MAX_HELD || c.link.tx.queued() >= MAX_OUT {
            return false;
        }
        service_of(c.service).is_none_or(|s| s.core.may_read(&c.link))
    }
}

/// Bring the service's budget up to date with what connection `r`
/// buffers now; when that shrank, read the paused connections that may
/// be read again.
///
/// # Safety
/// `r` must be live. Fetches `&mut` through
/// `service_of`/`connection_of`: no reference to the state of `r`, of its
/// service or of its connections may be live across the call (see
/// `service_of` in `port/mod.rs`).
pub(super) unsafe fn account(r: *mut CapsPort) {
    // SAFETY: `r` and its service are live (two objects); the
    // references end before paused connections are read.
    unsafe {
        let c = connection_of(r);
        let svc = c.service;
        let Some(s) = service_of(svc) else {
            return;
        };
        if s.core.account(&mut c.link, c.held_bytes) {
            resume_paused(svc);
        }
    }
}

/// Read again the paused connections of `svc` that may be read.
///
/// # Safety
/// `svc` must be a live service port. Fetches `&mut` through
/// `service_of`/`connection_of`: no reference to the state of `svc` or of
/// its connections may be live across the call (see `service_of` in
/// `port/mod.rs`).
pub(super) unsafe fn resume_paused(svc: *mut CapsPort) {
    // SAFETY: `svc` is live; listed remotes are live. Each reference to
    // a port's state lasts one step: reading reaches the service.
    unsafe {
        let paused = match service_of(svc) {
            Some(s) if !s.paused.is_empty() => std::mem::take(&mut s.paused),
            _ => return,
        };
        for r in paused {
            if !listed(svc, r) {
                continue;
            }
            if !may_read(r) {
                if let Some(s) = service_of(svc) {
                    s.paused.push(r);
                }
                continue;
            }
            let c = connection_of(r);
            c.paused = false;
            c.link.tx.rearm();
            remote_read(r);
        }
    }
}

/// Was port `p` inherited across `fork()`? Then it is dead in this
/// process: its first such use lets go of everything that is the
/// parent's (`disown`), logged under `func` when given (a close is not
/// logged), and its calls fail with `ENOTCONN`.
///
/// # Safety
/// `p` must be live. Fetches `&mut` through
/// `service_of`/`connection_of`: no reference to the state of `p`, of its
/// service or of its connections may be live across the call (see
/// `service_of` in `port/mod.rs`).
pub(super) unsafe fn inherited(p: *mut CapsPort, func: Option<&str>) -> bool {
    // SAFETY: `p` is live per the contract.
    unsafe {
        if (*p).fork_gen == fork_generation() {
            return false;
        }
        if !(*p).disowned {
            if let Some(func) = func {
                warn!(
                    func,
                    "CAPS port {p:p} was inherited across fork(): it is dead in this process (ENOTCONN)"
                );
            }
            disown(p);
        }
    }
    true
}

/// Let an inherited port go of the parent's socket, listener node, event
/// loop registrations and queued output (closing only this process's
/// copies of the descriptors); a service's connections too.
///
/// # Safety
/// `p` must be live. Fetches `&mut` through
/// `service_of`/`connection_of`: no reference to the state of `p`, of its
/// service or of its connections may be live across the call (see
/// `service_of` in `port/mod.rs`).
pub(super) unsafe fn disown(p: *mut CapsPort) {
    // SAFETY: `p` and the connections listed on a service are live.
    unsafe {
        (*p).disowned = true;
        match &mut (*p).kind {
            Kind::Service(s) => {
                s.token = None;
                s.idle_hook = None;
                if let Some(t) = s.timer.as_mut() {
                    t.token = None;
                }
                s.timer = None;
                s.dirty.clear();
                // Closes the copies; the node stays the parent's.
                s.listener = None;
                (*p).c.lfd = -1;
                (*p).c.flags |= CAPPF_SHUTDOWN;
                for &r in &s.remotes {
                    disown(r);
                }
            }
            Kind::Client(c) => c.conn.disown(),
            Kind::Connection(c) => {
                c.link.tx.disown();
                c.dirty = false;
            }
        }
    }
}
