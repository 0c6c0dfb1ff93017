//! What keeps a v1 service safe from its peers and from `fork()`: the
//! hello deadline sweep, the memory budget's accounting and
//! back-pressure, and the rule for ports inherited across `fork()`. The
//! limits themselves live in `conn` (shared with v2).

use std::os::fd::AsRawFd;

use super::*;

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
/// for all of them, and re-arm for the next one due.
///
/// # Safety
/// `svc` must be a live service port.
pub(super) unsafe fn hello_sweep(svc: *mut CapsPort) {
    // SAFETY: `svc` is live; listed remotes are live (shutdown unlists
    // them before they can be freed).
    unsafe {
        let Kind::Service(s) = &mut (*svc).kind else {
            return;
        };
        if let Some(t) = s.timer.as_mut() {
            t.clear();
            t.at = None;
        }
        let now = std::time::Instant::now();
        let overdue: Vec<*mut CapsPort> = s
            .remotes
            .iter()
            .copied()
            .filter(|&r| remote_of(r).conn.hello_overdue(now))
            .collect();
        let mut dropped = 0;
        let mut last = Cred::default();
        for r in overdue {
            if !listed(svc, r) {
                continue;
            }
            remote_read(r);
            if listed(svc, r) && !remote_of(r).hello_done {
                last = cred_of(r);
                remote_shutdown(r, None);
                dropped += 1;
            }
        }
        let name = service_name(svc);
        log_hello_drops("caps_service", &name, dropped, &last);
        let Kind::Service(s) = &mut (*svc).kind else {
            return;
        };
        let next = s
            .remotes
            .iter()
            .filter(|&&r| !remote_of(r).hello_done)
            .map(|&r| remote_of(r).conn.since + HELLO_DEADLINE)
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
/// `r` must be live.
pub(super) unsafe fn may_read(r: *mut CapsPort) -> bool {
    let rm = remote_of(r);
    if rm.held >= MAX_HELD || rm.conn.queued() >= MAX_OUT {
        return false;
    }
    // SAFETY: `r` is live; its service, if any, too.
    unsafe {
        match (rm.service.as_ref(), (*r).c.cred.uid) {
            (
                Some(CapsPort {
                    kind: Kind::Service(s),
                    ..
                }),
                uid,
            ) => s.budget.allows(uid),
            _ => true,
        }
    }
}

/// Bring the service's budget up to date with what connection `r`
/// buffers now; when that shrank, read the paused connections that may
/// be read again.
///
/// # Safety
/// `r` must be live.
pub(super) unsafe fn account(r: *mut CapsPort) {
    let rm = remote_of(r);
    let svc = rm.service;
    if svc.is_null() {
        return;
    }
    let now = if rm.conn.dead {
        0
    } else {
        rm.held_bytes + rm.conn.queued()
    };
    let was = std::mem::replace(&mut rm.charged, now);
    // SAFETY: `r` and its service are live.
    unsafe {
        if let Kind::Service(s) = &mut (*svc).kind {
            s.budget.update((*r).c.cred.uid, was, now);
        }
        if now < was {
            resume_paused(svc);
        }
    }
}

/// Read again the paused connections of `svc` that may be read.
///
/// # Safety
/// `svc` must be a live service port.
pub(super) unsafe fn resume_paused(svc: *mut CapsPort) {
    // SAFETY: `svc` is live; listed remotes are live.
    unsafe {
        let Kind::Service(s) = &mut (*svc).kind else {
            return;
        };
        if s.paused.is_empty() {
            return;
        }
        for r in std::mem::take(&mut s.paused) {
            if !listed(svc, r) {
                continue;
            }
            if !may_read(r) {
                if let Kind::Service(s) = &mut (*svc).kind {
                    s.paused.push(r);
                }
                continue;
            }
            let rm = remote_of(r);
            rm.paused = false;
            rm.conn.drained = false;
            let ev = rm.conn.events | EV_IN;
            rm.conn.set_events(ev);
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
/// `p` must be live.
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
/// `p` must be live.
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
            Kind::Remote(rm) => {
                rm.conn.disown();
                rm.dirty = false;
            }
        }
    }
}
