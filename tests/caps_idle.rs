//! What idle connections cost a CAPS v1 service (issue 17): a thousand
//! connections that each sent one request and got its reply cost the
//! service at most 4 KB each while they are held, and its memory comes
//! back to within 10% of the start once they close.

#[macro_use]
mod common;

use common::{Proc, rss_kib, wait_listening};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

c_program!(echo, "caps_echo-idle", "caps_echo");

type Base = common::CapsBase;

const CONNECTIONS: usize = 1000;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Wait (at most 20 s) until `pid` holds at most `n` descriptors.
fn wait_fds_at_most(pid: u32, n: usize) {
    let t0 = Instant::now();
    while open_fds(pid) > n {
        assert!(t0.elapsed() < Duration::from_secs(20), "{}", open_fds(pid));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A v1 client hello (no shared memory offered) and one request with a
/// 4-byte payload.
fn hello_and_request(id: u64) -> Vec<u8> {
    let mut b = b"CAPS".to_vec();
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&66560u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&[0u8; 24]);
    b.extend_from_slice(&[1, 2, 3, 4]);
    b
}

/// Connect, send the hello and a request, read the server's hello and
/// the reply: a connection that had traffic and is now quiet.
fn served(sock: &Path, id: u64) -> UnixStream {
    let mut st = UnixStream::connect(sock).unwrap();
    st.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    st.write_all(&hello_and_request(id)).unwrap();
    let mut head = [0u8; 16 + 48];
    st.read_exact(&mut head).unwrap();
    assert_eq!(&head[..4], b"CAPS");
    let body_len = u32::from_le_bytes(head[16 + 4..16 + 8].try_into().unwrap());
    let mut body = vec![0u8; body_len as usize];
    st.read_exact(&mut body).unwrap();
    st
}

/// Raise RLIMIT_NOFILE to the hard limit (the service inherits it);
/// false when that is too low for the test.
fn enough_descriptors() -> bool {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a writable rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
    }
    rl.rlim_cur as usize >= CONNECTIONS + 64
}

#[test]
fn idle_connections_cost_at_most_4_kb_and_memory_comes_back() {
    if !enough_descriptors() {
        eprintln!("skipped: RLIMIT_NOFILE below {}", CONNECTIONS + 64);
        return;
    }
    let base = Base::new("idle");
    let mut s = base.cmd(echo());
    s.args(["-s", "idle"]);
    let mut srv = Proc::spawn(s);
    srv.expect_line("serving idle");
    let sock = base.v1_socket("idle");
    wait_listening(&sock);
    let pid = srv.pid();
    // The start: a service that served one client.
    drop(served(&sock, 1));
    std::thread::sleep(Duration::from_millis(200));
    let fds0 = open_fds(pid);
    let rss0 = rss_kib(pid);
    let held: Vec<UnixStream> = (0..CONNECTIONS).map(|i| served(&sock, i as u64)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let rss = rss_kib(pid);
    let per_conn = (rss.saturating_sub(rss0)) as f64 / CONNECTIONS as f64;
    eprintln!(
        "idle: {rss0} KiB, {rss} KiB with {CONNECTIONS} connections ({per_conn:.2} KiB each)"
    );
    assert!(per_conn <= 4.0, "{per_conn:.2} KiB per idle connection");
    drop(held);
    wait_fds_at_most(pid, fds0);
    std::thread::sleep(Duration::from_millis(300));
    let end = rss_kib(pid);
    eprintln!("idle: {end} KiB after they closed");
    assert!(
        end <= rss0 + rss0 / 10,
        "{end} KiB after the connections closed, {rss0} KiB before"
    );
    let _ = srv.kill();
}
