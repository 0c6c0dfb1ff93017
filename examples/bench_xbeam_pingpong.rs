//! Peer of the virtual-cpu benchmark (`benches/vcpu_bench.c`), run by
//! `make bench-vcpu` right after it: a round trip between two OS threads
//! through two crossbeam-channel `bounded(1)` channels (the request and
//! the reply), every value checked. Like `vcpu_bench`, every round trip is
//! timed on its own and each repetition prints p50, p99, p99.9, the largest
//! and the mean in ns, and p99.9 / p50. Given the file `vcpu_bench` wrote
//! (`domsg_p50`, `floor_p50` lines), it also prints the ratios of the
//! medians of p50.
//!
//! Usage: `cargo run --release --example bench_xbeam_pingpong [rounds [reps [vcpu-results]]]`

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::time::Instant;

/// p50, p99, p99.9, max and mean of `ns` (sorted here).
fn summary(ns: &mut [f64]) -> [f64; 5] {
    ns.sort_by(f64::total_cmp);
    let n = ns.len();
    let mean = ns.iter().sum::<f64>() / n as f64;
    [
        ns[n / 2],
        ns[n * 99 / 100],
        ns[n * 999 / 1000],
        ns[n - 1],
        mean,
    ]
}

/// One repetition: `rounds` timed round trips after a tenth as many
/// untimed ones, on a new pair of channels and a new server thread.
fn repetition(rounds: usize) -> [f64; 5] {
    let (req_tx, req_rx) = crossbeam_channel::bounded::<u64>(1);
    let (rep_tx, rep_rx) = crossbeam_channel::bounded::<u64>(1);
    let server = std::thread::spawn(move || {
        while let Ok(n) = req_rx.recv() {
            if rep_tx.send(3 * n + 1).is_err() {
                break;
            }
        }
    });
    let mut samples = vec![0.0; rounds];
    let warm = rounds / 10;
    let mut t0 = Instant::now();
    for i in 0..warm + rounds {
        let n = i as u64;
        req_tx.send(n).unwrap();
        assert_eq!(rep_rx.recv().unwrap(), 3 * n + 1);
        let t1 = Instant::now();
        if i >= warm {
            samples[i - warm] = (t1 - t0).as_nanos() as f64;
        }
        t0 = t1;
    }
    drop(req_tx);
    server.join().unwrap();
    summary(&mut samples)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000)
        .max(1000);
    let reps: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .filter(|r| (1..100).contains(r))
        .unwrap_or(5);
    let results = args
        .next()
        .map(|p| std::fs::read_to_string(&p).unwrap_or_default());

    let mut p50s = Vec::with_capacity(reps);
    for r in 1..=reps {
        let [p50, p99, p999, max, mean] = repetition(rounds);
        println!(
            "{r:<4} {:<28} {p50:>9.0} {p99:>9.0} {p999:>9.0} {max:>10.0} {mean:>9.0} {:>9.1}",
            "crossbeam bounded(1)",
            p999 / p50
        );
        p50s.push(p50);
    }
    p50s.sort_by(f64::total_cmp);
    let p50 = if reps % 2 == 1 {
        p50s[reps / 2]
    } else {
        (p50s[reps / 2 - 1] + p50s[reps / 2]) / 2.0
    };
    print!("median p50: crossbeam bounded(1) {p50:.0} ns");
    let r = results.as_deref().unwrap_or("");
    match (
        bench_common::figure(r, "domsg_p50"),
        bench_common::figure(r, "floor_p50"),
    ) {
        (Some(dm), Some(fl)) => println!(
            " (lwkt_domsg / crossbeam {:.2}x, crossbeam / floor {:.2}x)",
            dm / p50,
            p50 / fl
        ),
        _ => println!(),
    }
}
