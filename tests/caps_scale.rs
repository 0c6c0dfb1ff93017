//! CAPS at scale (issue 17): the order a v1 service takes its
//! connections' requests in. `c-tests/caps_fair.c` has one client send a
//! burst of requests at once and another one request behind it, while the
//! service takes none; then counts where the second client's request came.
//! Over shared memory and over the socket alike.

#[macro_use]
mod common;

use common::{CapsBase, run, text};

c_program!(fair, "caps_fair", "caps_fair");

/// `first`: the client that joins first ("a", the bursting one, or "b").
fn burst_case(tag: &str, shm: bool, first: &str) {
    let base = CapsBase::new(tag);
    let mut c = base.cmd(fair());
    c.arg(first);
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
    burst_case("fair-shm-a", true, "a");
    burst_case("fair-shm-b", true, "b");
}

#[test]
fn a_burst_does_not_delay_another_client_socket() {
    burst_case("fair-socket-a", false, "a");
    burst_case("fair-socket-b", false, "b");
}
