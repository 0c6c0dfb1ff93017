//! The event loop's tests.

use super::*;
use std::cell::Cell;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

/// A loop that watched many descriptors and now watches few gives
/// the room of their registrations back, and a token of a
/// registration that went with it matches no later one (issue 17).
#[test]
fn many_registrations_gone_give_their_room_back() {
    let (a, _b) = UnixStream::pair().unwrap();
    let watch = |n: usize| -> Vec<(Token, RawFd)> {
        (0..n)
            .map(|_| {
                // SAFETY: dup of a descriptor we own; closed by `unwatch`.
                let d = unsafe { libc::dup(a.as_raw_fd()) };
                (register(d, 0, Box::new(|_| {})).unwrap(), d)
            })
            .collect()
    };
    let unwatch = |w: &[(Token, RawFd)]| {
        for &(t, d) in w {
            unregister(t);
            // SAFETY: our dup, no longer watched.
            unsafe { libc::close(d) };
        }
    };
    let keep = watch(1);
    let many = watch(4000);
    let peak = with(|l| l.slots.capacity());
    unwatch(&many);
    let (slots, free) = with(|l| (l.slots.capacity(), l.free.capacity()));
    assert!(
        slots * 8 < peak && free * 8 < peak,
        "{slots} {free} of {peak}"
    );
    // New registrations do not answer to the old tokens.
    let fresh = watch(8);
    for (t, _) in &many {
        assert!(fresh.iter().all(|(f, _)| f != t));
    }
    unwatch(&fresh);
    unwatch(&keep);
}

/// Registrations left from a small loop do not keep a loop that grew
/// much larger since from giving its room back when the burst goes
/// (seen failing with the first compaction rule: 3064 slots kept for
/// 64 live).
#[test]
fn a_burst_gives_its_room_back_past_older_registrations() {
    let (a, _b) = UnixStream::pair().unwrap();
    let reg = || {
        // SAFETY: dup of a descriptor we own; closed below.
        let d = unsafe { libc::dup(a.as_raw_fd()) };
        (register(d, 0, Box::new(|_| {})).unwrap(), d)
    };
    let drop_all = |w: &[(Token, RawFd)]| {
        for &(t, d) in w {
            unregister(t);
            // SAFETY: our dup, no longer watched.
            unsafe { libc::close(d) };
        }
    };
    // 256 slots; the first 192 go, the last 64 stay.
    let first: Vec<_> = (0..256).map(|_| reg()).collect();
    drop_all(&first[..192]);
    let high = with(|l| l.high);
    // A burst of 3000 more, then they all go.
    let burst: Vec<_> = (0..3000).map(|_| reg()).collect();
    let peak = with(|l| l.slots.len());
    drop_all(&burst);
    let (len, live) = with(|l| (l.slots.len(), l.live));
    drop_all(&first[192..]);
    assert!(
        len < 1024,
        "high {high}: {len} slots kept for {live} live (peak {peak})"
    );
}

#[test]
fn readiness_runs_callbacks_and_unregister_stops_them() {
    let (mut a, b) = UnixStream::pair().unwrap();
    let hits = Rc::new(Cell::new(0));
    let h = Rc::clone(&hits);
    let t = register(
        b.as_raw_fd(),
        libc::EPOLLIN as u32,
        Box::new(move |_| h.set(h.get() + 1)),
    )
    .unwrap();
    assert_eq!(sources(), 1);
    assert_eq!(poll(0), 0);
    a.write_all(b"x").unwrap();
    assert_eq!(poll(1000), 1);
    assert_eq!(hits.get(), 1);
    unregister(t);
    assert_eq!(sources(), 0);
    assert_eq!(poll(0), 0);
    assert_eq!(hits.get(), 1);
    unregister(t); // stale: harmless
}

#[test]
fn idle_hooks_run_before_blocking_only() {
    let n = Rc::new(Cell::new(0));
    let m = Rc::clone(&n);
    let id = add_idle_hook(Box::new(move || m.set(m.get() + 1)));
    poll(0);
    assert_eq!(n.get(), 0);
    poll(1);
    assert_eq!(n.get(), 1);
    remove_idle_hook(id);
    poll(1);
    assert_eq!(n.get(), 1);
}

#[test]
fn waker_interrupts_a_blocking_poll() {
    let w = waker();
    let th = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        w.wake();
    });
    assert_eq!(poll(5000), 1);
    th.join().unwrap();
}

/// A probe that always has input (a busy ring).
struct Busy;
impl Probe for Busy {
    fn ready(&self) -> bool {
        true
    }
    fn sleep(&self) -> bool {
        false
    }
    fn woke(&self) {}
}

/// Rings that always have input must not keep the descriptors from
/// being looked at (issue 17: with many busy CAPS rings, new
/// connections, attach records and wakeups waited for ever).
#[test]
fn busy_probes_do_not_starve_the_descriptors() {
    let (ring_a, ring_b) = UnixStream::pair().unwrap();
    let t = register(ring_b.as_raw_fd(), 0, Box::new(|_| {})).unwrap();
    set_probe(t, Some(Box::new(Busy)));
    let (mut a, b) = UnixStream::pair().unwrap();
    let hits = Rc::new(Cell::new(0));
    let h = Rc::clone(&hits);
    let s = register(
        b.as_raw_fd(),
        libc::EPOLLIN as u32,
        Box::new(move |_| h.set(h.get() + 1)),
    )
    .unwrap();
    a.write_all(b"x").unwrap();
    for timeout in [0, -1] {
        hits.set(0);
        for _ in 0..PROBE_POLLS {
            assert!(poll(timeout) >= 1);
        }
        assert_eq!(hits.get(), 1, "polls with timeout {timeout}");
    }
    // The idle loop's spin on the probes too.
    hits.set(0);
    for _ in 0..PROBE_POLLS {
        assert!(poll_probes() >= 1);
    }
    assert_eq!(hits.get(), 1, "poll_probes");
    unregister(s);
    unregister(t);
    drop(ring_a);
}

/// A probe whose input a test turns on and off.
struct Flag(Rc<Cell<bool>>);
impl Probe for Flag {
    fn ready(&self) -> bool {
        self.0.get()
    }
    fn sleep(&self) -> bool {
        !self.0.get()
    }
    fn woke(&self) {}
}

/// A reader that took its turn asks whether another has input: not
/// its own probe, but another's, a registration due again, or a
/// descriptor that is ready, whose callback is not run inside the
/// question but at the next look (issue 17: a connection alone is read
/// on instead of stopping every TURN requests).
#[test]
fn others_waiting_sees_the_others_and_not_the_asker() {
    let (_a1, a2) = UnixStream::pair().unwrap();
    let (_b1, b2) = UnixStream::pair().unwrap();
    let (ra, rb) = (Rc::new(Cell::new(true)), Rc::new(Cell::new(false)));
    let a = register(a2.as_raw_fd(), libc::EPOLLIN as u32, Box::new(|_| {})).unwrap();
    let b = register(b2.as_raw_fd(), libc::EPOLLIN as u32, Box::new(|_| {})).unwrap();
    set_probe(a, Some(Box::new(Flag(Rc::clone(&ra)))));
    set_probe(b, Some(Box::new(Flag(Rc::clone(&rb)))));
    assert!(!others_waiting(a), "only the asker has input");
    rb.set(true);
    assert!(others_waiting(a), "another probe is ready");
    assert!(others_waiting(b));
    rb.set(false);
    ra.set(false);
    again(b);
    assert!(others_waiting(a), "another is due again");
    assert!(!others_waiting(b), "the asker is due again");
    assert_eq!(poll_probes(), 1);
    // A descriptor with input: seen, called back at the next look.
    let (mut c1, c2) = UnixStream::pair().unwrap();
    let hits = Rc::new(Cell::new(0));
    let h = Rc::clone(&hits);
    let cfd = c2.as_raw_fd();
    let c = register(
        cfd,
        libc::EPOLLIN as u32,
        Box::new(move |bits| {
            assert_eq!(bits & libc::EPOLLIN as u32, libc::EPOLLIN as u32);
            let mut b = [0u8; 8];
            // SAFETY: reading into a local buffer from our socket.
            unsafe { libc::read(cfd, b.as_mut_ptr().cast(), 8) };
            h.set(h.get() + 1);
        }),
    )
    .unwrap();
    c1.write_all(b"x").unwrap();
    assert!(others_waiting(a), "a descriptor is ready");
    assert_eq!(hits.get(), 0, "not called back inside the question");
    assert!(has_probes());
    assert_eq!(poll_probes(), 1);
    assert_eq!(hits.get(), 1);
    // Its own descriptor is not another's input.
    let (mut a3, a4) = UnixStream::pair().unwrap();
    let d = register(a4.as_raw_fd(), libc::EPOLLIN as u32, Box::new(|_| {})).unwrap();
    unregister(c);
    drop(c1);
    a3.write_all(b"y").unwrap();
    assert!(!others_waiting(d));
    unregister(d);
    unregister(a);
    unregister(b);
    assert!(!has_probes());
}

/// Within one pass of ready descriptors, those not yet called back
/// are input that waits.
#[test]
fn others_waiting_counts_the_rest_of_the_pass() {
    let (mut x1, x2) = UnixStream::pair().unwrap();
    let (mut y1, y2) = UnixStream::pair().unwrap();
    let seen = Rc::new(Cell::new(Vec::new()));
    let me: Rc<Cell<[Option<Token>; 2]>> = Rc::new(Cell::new([None, None]));
    let mk = |i: usize, sock: &UnixStream| {
        let (seen, me) = (Rc::clone(&seen), Rc::clone(&me));
        let fd = sock.as_raw_fd();
        Box::new(move |_| {
            let mut b = [0u8; 8];
            // SAFETY: reading into a local buffer from our socket.
            unsafe { libc::read(fd, b.as_mut_ptr().cast(), 8) };
            let mut v = seen.take();
            v.push(others_waiting(me.get()[i].unwrap()));
            seen.set(v);
        }) as Callback
    };
    let tx = register(x2.as_raw_fd(), libc::EPOLLIN as u32, mk(0, &x2)).unwrap();
    let ty = register(y2.as_raw_fd(), libc::EPOLLIN as u32, mk(1, &y2)).unwrap();
    me.set([Some(tx), Some(ty)]);
    x1.write_all(b"x").unwrap();
    y1.write_all(b"y").unwrap();
    assert_eq!(poll(1000), 2);
    assert_eq!(seen.take(), vec![true, false]);
    unregister(tx);
    unregister(ty);
}

/// Probes ready at every look are called back in a rotating order:
/// none is first every time (issue 17: the peer answered first gets
/// its next request in first).
#[test]
fn ready_probes_take_turns_at_being_first() {
    let order = Rc::new(Cell::new(Vec::new()));
    let mut regs = Vec::new();
    for i in 0..3 {
        let (a, b) = UnixStream::pair().unwrap();
        let o = Rc::clone(&order);
        let t = register(
            b.as_raw_fd(),
            0,
            Box::new(move |_| {
                let mut v = o.take();
                v.push(i);
                o.set(v);
            }),
        )
        .unwrap();
        set_probe(t, Some(Box::new(Busy)));
        regs.push((t, a, b));
    }
    let mut firsts = Vec::new();
    for _ in 0..3 {
        assert_eq!(run_probes(), 3);
        let v = order.take();
        assert_eq!(v.len(), 3);
        firsts.push(v[0]);
    }
    firsts.sort();
    assert_eq!(firsts, vec![0, 1, 2]);
    for (t, _, _) in regs {
        unregister(t);
    }
}

#[test]
fn again_calls_back_once_at_the_next_look() {
    let (_a, b) = UnixStream::pair().unwrap();
    let bits = Rc::new(Cell::new(Vec::new()));
    let seen = Rc::clone(&bits);
    let t = register(
        b.as_raw_fd(),
        libc::EPOLLIN as u32,
        Box::new(move |x| {
            let mut v = seen.take();
            v.push(x);
            seen.set(v);
        }),
    )
    .unwrap();
    assert!(!has_probes());
    again(t);
    again(t);
    assert!(has_probes());
    assert_eq!(poll_probes(), 1);
    assert_eq!(bits.take(), vec![EV_PROBE]);
    assert_eq!(poll(0), 0);
    assert!(bits.take().is_empty());
    again(t);
    unregister(t);
    assert!(!has_probes());
}

#[test]
fn a_callback_may_unregister_itself() {
    let (mut a, b) = UnixStream::pair().unwrap();
    let me: Rc<Cell<Option<Token>>> = Rc::new(Cell::new(None));
    let m = Rc::clone(&me);
    let t = register(
        b.as_raw_fd(),
        libc::EPOLLIN as u32,
        Box::new(move |_| unregister(m.get().unwrap())),
    )
    .unwrap();
    me.set(Some(t));
    a.write_all(b"x").unwrap();
    assert_eq!(poll(1000), 1);
    assert_eq!(sources(), 0);
}

/// A probe that is never ready.
struct Never;
impl Probe for Never {
    fn ready(&self) -> bool {
        false
    }
    fn sleep(&self) -> bool {
        true
    }
    fn woke(&self) {}
}

/// The probe and again lists of a loop that watched many probes (a
/// service whose shared-memory connections all had traffic) give
/// their room back once those go, whether the probes are withdrawn
/// (the connections went quiet) or their registrations end (issue 17:
/// ~400 KB of anonymous memory stayed after 10,000 such connections
/// closed).
#[test]
fn many_probes_gone_give_their_room_back() {
    let (a, _b) = UnixStream::pair().unwrap();
    let watch = |n: usize| -> Vec<(Token, RawFd)> {
        (0..n)
            .map(|_| {
                // SAFETY: dup of a descriptor we own; closed below.
                let d = unsafe { libc::dup(a.as_raw_fd()) };
                let t = register(d, 0, Box::new(|_| {})).unwrap();
                set_probe(t, Some(Box::new(Never)));
                again(t);
                (t, d)
            })
            .collect()
    };
    let keep = watch(1);
    let quiet = watch(3000);
    let closed = watch(3000);
    let peak = with(|l| l.probes.capacity().min(l.again.capacity()));
    // Half go quiet: their probes are withdrawn, the rest close.
    for &(t, _) in &quiet {
        set_probe(t, None);
    }
    for &(t, d) in closed.iter().chain(&quiet) {
        unregister(t);
        // SAFETY: our dup, no longer watched.
        unsafe { libc::close(d) };
    }
    let (probes, again) = with(|l| (l.probes.capacity(), l.again.capacity()));
    assert!(
        probes * 8 < peak && again * 8 < peak,
        "{probes} {again} of {peak}"
    );
    for &(t, d) in &keep {
        unregister(t);
        // SAFETY: our dup, no longer watched.
        unsafe { libc::close(d) };
    }
}
