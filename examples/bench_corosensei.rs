//! The corosensei peer of the thread benchmark (`benches/ctxsw_bench.c`),
//! run by `make bench-threads` right after it, measured the same way:
//!
//! * switch: a coroutine and its caller resuming and suspending in turn;
//!   per switch (each resume or suspend);
//! * create + first run + exit: `Coroutine::with_stack` on one stack that
//!   `into_stack` hands back after every run; per coroutine;
//! * round trip: the caller queues a request, resumes a server coroutine
//!   that takes it from the queue, answers on a reply queue and suspends;
//!   per round trip (the peer of the same-cpu `lwkt_domsg`).
//!
//! Each is run 3 times; the median is printed with every run. Given the
//! file `ctxsw_bench` wrote (`switch`, `create`, `roundtrip` lines, ns),
//! it also prints libcaps / corosensei.
//!
//! Usage: `cargo run --release --example bench_corosensei [scale [libcaps-results]]`

#[path = "bench_common/mod.rs"]
mod bench_common;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

const REPS: usize = 3;
const STACK: usize = 64 * 1024;

fn per(t0: Instant, n: u64) -> f64 {
    t0.elapsed().as_nanos() as f64 / n as f64
}

/// ns per switch: `n` resumes, each followed by a suspend.
fn switch(n: u64) -> f64 {
    let mut co: Coroutine<(), (), ()> = Coroutine::new(move |y, ()| {
        for _ in 0..n {
            y.suspend(());
        }
    });
    co.resume(()); // started; now in its loop
    let t0 = Instant::now();
    for _ in 1..n {
        co.resume(());
    }
    let ns = per(t0, 2 * (n - 1));
    assert!(matches!(co.resume(()), CoroutineResult::Return(())));
    ns
}

/// ns per coroutine created on a reused stack, run once to its end.
fn create(n: u64) -> f64 {
    let mut stack = DefaultStack::new(STACK).expect("corosensei stack");
    let t0 = Instant::now();
    for i in 0..n {
        let mut co = Coroutine::with_stack(stack, |_: &Yielder<u64, ()>, v: u64| v + 1);
        match co.resume(i) {
            CoroutineResult::Return(v) => assert_eq!(v, i + 1),
            CoroutineResult::Yield(()) => panic!("create: the coroutine yielded"),
        }
        stack = co.into_stack();
    }
    per(t0, n)
}

type Queue = Rc<RefCell<VecDeque<u64>>>;

/// ns per round trip through a request queue and a reply queue.
fn round_trip(n: u64) -> f64 {
    let requests: Queue = Rc::default();
    let replies: Queue = Rc::default();
    let (rq, rp) = (requests.clone(), replies.clone());
    // Input: true to stop.
    let mut server: Coroutine<bool, (), ()> =
        Coroutine::new(move |y: &Yielder<bool, ()>, mut quit: bool| {
            while !quit {
                while let Some(m) = rq.borrow_mut().pop_front() {
                    rp.borrow_mut().push_back(3 * m + 1);
                }
                quit = y.suspend(());
            }
        });
    let t0 = Instant::now();
    for i in 0..n {
        requests.borrow_mut().push_back(i);
        server.resume(false);
        assert_eq!(replies.borrow_mut().pop_front(), Some(3 * i + 1));
    }
    let ns = per(t0, n);
    assert!(matches!(server.resume(true), CoroutineResult::Return(())));
    ns
}

fn median(v: &[f64; REPS]) -> f64 {
    let mut s = *v;
    s.sort_by(f64::total_cmp);
    s[REPS / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scale: f64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0);
    let results = args
        .next()
        .map(|p| std::fs::read_to_string(&p).unwrap_or_default());
    let iters = ((2_000_000.0 * scale) as u64).max(1000);

    // Warm up, as ctxsw_bench does.
    switch(iters / 20);
    create(iters / 200);
    round_trip(iters / 20);
    let (mut sw, mut cr, mut rt) = ([0.0; REPS], [0.0; REPS], [0.0; REPS]);
    for r in 0..REPS {
        sw[r] = switch(iters);
        cr[r] = create(iters / 10);
        rt[r] = round_trip(iters);
    }

    println!("\nagainst corosensei 0.3, ns, median of {REPS} (each run corosensei)");
    println!(
        "{:<34} {:>9} {:>10} {:>9}  runs",
        "operation", "libcaps", "corosensei", "ratio"
    );
    let rows = [
        ("switch, thr2 pattern (per switch)", "switch", &sw),
        ("create + first run + exit", "create", &cr),
        ("same-cpu round trip (domsg/queue)", "roundtrip", &rt),
    ];
    for (what, key, runs) in rows {
        let peer = median(runs);
        let runs: Vec<String> = runs.iter().map(|v| format!("{v:.1}")).collect();
        match results
            .as_deref()
            .and_then(|r| bench_common::figure(r, key))
        {
            Some(ns) => println!(
                "{what:<34} {ns:>9.1} {peer:>10.1} {:>8.2}x  {}",
                ns / peer,
                runs.join(", ")
            ),
            None => println!(
                "{what:<34} {:>9} {peer:>10.1} {:>9}  {}",
                "-",
                "-",
                runs.join(", ")
            ),
        }
    }
}
