//! What the benchmark examples share: reading the figures a C benchmark
//! wrote for them (one `key value` pair a line).

/// The figure `key` in `results`, if it is there and a number.
pub fn figure(results: &str, key: &str) -> Option<f64> {
    results.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}
