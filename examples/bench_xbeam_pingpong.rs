//! Baseline for the virtual-cpu benchmark (`benches/vcpu_bench.c`): a
//! round trip between two OS threads through two crossbeam-channel
//! `bounded(1)` channels (the request and the reply), every value checked.
//! Prints ns per round trip.
//!
//! Usage: `cargo run --release --example bench_xbeam_pingpong [rounds]`

use std::time::Instant;

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let (req_tx, req_rx) = crossbeam_channel::bounded::<u64>(1);
    let (rep_tx, rep_rx) = crossbeam_channel::bounded::<u64>(1);
    let server = std::thread::spawn(move || {
        while let Ok(n) = req_rx.recv() {
            if rep_tx.send(3 * n + 1).is_err() {
                break;
            }
        }
    });
    // Warm up, then measure.
    for n in 0..rounds / 10 {
        req_tx.send(n).unwrap();
        assert_eq!(rep_rx.recv().unwrap(), 3 * n + 1);
    }
    let t0 = Instant::now();
    for n in 0..rounds {
        req_tx.send(n).unwrap();
        assert_eq!(rep_rx.recv().unwrap(), 3 * n + 1);
    }
    let ns = t0.elapsed().as_nanos() as f64 / rounds as f64;
    drop(req_tx);
    server.join().unwrap();
    println!(
        "{:<44} {:>10.1}",
        "crossbeam bounded(1) ping-pong, 2 threads", ns
    );
}
