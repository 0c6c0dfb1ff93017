//! CAPS at scale (issue 17): the order a service (v1 ports and v2
//! `caps_sys_*`) takes its connections' requests in. `c-tests/caps_fair.c` has one client send a
//! burst of requests at once and another one request behind it, while the
//! service takes none; then counts where the second client's request came.
//! Over shared memory and over the socket alike.

#[macro_use]
mod common;

use common::{CapsBase, run, text};

c_program!(fair, "caps_fair", "caps_fair");

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
