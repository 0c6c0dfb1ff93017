//! CAPS at scale (issue 17): the order a service (v1 ports and v2
//! `caps_sys_*`) takes its connections' requests in. `c-tests/caps_fair.c` has one client send a
//! burst of requests at once and another one request behind it, while the
//! service takes none; then counts where the second client's request came.
//! Over shared memory and over the socket alike. `c-tests/caps_allocs.c`
//! counts a v1 client's and service's calls to malloc per round trip.

#[macro_use]
mod common;

use common::{CapsBase, run, text};

c_program!(fair, "caps_fair", "caps_fair");
c_program!(allocs, "caps_allocs", "caps_allocs");

/// `first`: the client that joins first ("a", the bursting one, or "b").
/// `v2`: the kernel-style calls instead of the v1 ports.
fn burst_case(tag: &str, shm: bool, first: &str, v2: bool) {
    let base = CapsBase::new(tag);
    let mut c = base.cmd(fair());
    c.arg(first);
    if v2 {
        c.arg("v2");
    }
    if !shm {
        c.env("LIBCAPS_SHM", "0");
    }
    let out = run(c);
    assert!(
        out.status.success(),
        "caps_fair failed: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "fair: yes\n", "{}", text(&out.stderr));
}

#[test]
fn a_burst_does_not_delay_another_client_shm() {
    burst_case("fair-shm-a", true, "a", false);
    burst_case("fair-shm-b", true, "b", false);
}

#[test]
fn a_burst_does_not_delay_another_client_socket() {
    burst_case("fair-socket-a", false, "a", false);
    burst_case("fair-socket-b", false, "b", false);
}

#[test]
fn a_v2_burst_does_not_delay_another_client_shm() {
    burst_case("fair2-shm-a", true, "a", true);
    burst_case("fair2-shm-b", true, "b", true);
}

#[test]
fn a_v2_burst_does_not_delay_another_client_socket() {
    burst_case("fair2-socket-a", false, "a", true);
    burst_case("fair2-socket-b", false, "b", true);
}

/// A warm v1 client and service allocate nothing per round trip (each
/// allocated and freed a payload buffer per frame read, and the cpu a
/// list per look at its rings: one or two mallocs per round trip on each
/// side). `caps_allocs` counts over 2,000 round trips; a few (a timer's
/// work) may allocate.
fn allocs_case(tag: &str, shm: bool) {
    let base = CapsBase::new(tag);
    let mut c = base.cmd(allocs());
    if !shm {
        c.env("LIBCAPS_SHM", "0");
    }
    let out = run(c);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "caps_allocs failed: {}",
        text(&out.stderr)
    );
    // "client N" and "service N": each side's mallocs.
    let counts: Vec<(&str, u64)> = stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(who, n)| Some((who, n.parse().ok()?)))
        .collect();
    assert_eq!(counts.len(), 2, "{stdout}");
    assert!(
        counts.iter().all(|&(_, n)| n < 100),
        "mallocs in 2,000 round trips: {counts:?}"
    );
}

#[test]
fn a_warm_round_trip_allocates_nothing_shm() {
    allocs_case("allocs-shm", true);
}

#[test]
fn a_warm_round_trip_allocates_nothing_socket() {
    allocs_case("allocs-socket", false);
}
