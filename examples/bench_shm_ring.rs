//! Micro-benchmark of the shared-memory rings of `caps::shm` (issue 16,
//! phase 1): a ping-pong of 16-byte requests between two processes over
//! one region, set up as a connection will (the memfd made by the client,
//! passed with `SCM_RIGHTS`, checked and mapped by the service). Each side
//! waits for the ring by spinning up to a budget, then sleeps on the
//! socket after setting its asleep flag; the other side sends a doorbell
//! only then. Prints the round trip p50 and p99 in µs for a spin budget of
//! 50 µs (the socket poll's maximum) and of 0 (every wait sleeps: the
//! doorbell path). Baseline in the same run: the floor, two processes
//! bouncing a counter through one shared page (spinning only).
//!
//! Run: `cargo run --release --example bench_shm_ring [round-trips]`

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use caps::caps::shm::fdpass::{recv_with_fds, send_with_fds};
use caps::caps::shm::{Consumer, DEFAULT_RING, Next, Producer, Push, Region, Side, doorbell};
use caps::caps::wire::{FrameKind, HEADER_LEN, Header};

const MAX_BODY: u32 = 66_480;

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

/// Send a doorbell on the socket (a full socket already wakes the peer).
fn ring_doorbell(sock: BorrowedFd<'_>) {
    let d = doorbell();
    // SAFETY: sending 48 bytes from a live array.
    unsafe {
        libc::send(
            sock.as_raw_fd(),
            d.as_ptr().cast(),
            HEADER_LEN,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
}

/// Wait until `c` has a record: spin up to `spin`, then sleep on the
/// socket (asleep flag first). False: the peer closed the socket.
fn wait(c: &mut Consumer, sock: BorrowedFd<'_>, spin: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        if c.has_data() {
            return true;
        }
        if t0.elapsed() >= spin {
            break;
        }
        std::hint::spin_loop();
    }
    loop {
        if !c.prepare_sleep().expect("ring") {
            return true;
        }
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 1000) };
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a live buffer; doorbells are discarded.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        c.woke();
        if n == 0 {
            return false;
        }
        if c.has_data() {
            return true;
        }
    }
}

fn push(p: &mut Producer, sock: BorrowedFd<'_>, h: &Header, body: &[u8]) {
    loop {
        match p.push(&h.encode(), body).expect("ring") {
            Push::Written { doorbell } => {
                if doorbell {
                    ring_doorbell(sock);
                }
                return;
            }
            Push::Full => std::hint::spin_loop(),
            Push::OnSocket { .. } => unreachable!("small frames only"),
        }
    }
}

fn serve(sock: UnixStream, spin: Duration) {
    pin(1);
    let mut fds = Vec::new();
    let mut b = [0u8; 1];
    recv_with_fds(sock.as_fd(), &mut b, &mut fds).expect("recv memfd");
    let region = Region::attach(fds.pop().expect("no memfd"), DEFAULT_RING).expect("attach");
    let (mut p, mut c) = region.split(Side::Service, MAX_BODY);
    let mut body = [0u8; 64];
    while wait(&mut c, sock.as_fd(), spin) {
        while let Some(Next::Frame(h)) = c.next_header().expect("ring") {
            let b = &mut body[..h.body_len as usize];
            c.take_body(b).expect("body");
            let mut r = h;
            r.kind = FrameKind::Reply;
            r.capacity = 0;
            push(&mut p, sock.as_fd(), &r, b);
        }
        if c.take_doorbell() {
            ring_doorbell(sock.as_fd());
        }
    }
}

fn run(n: usize, spin: Duration) -> (f64, f64) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    // SAFETY: the child only runs `serve` and exits with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(a);
        serve(b, spin);
        // SAFETY: ends the child.
        unsafe { libc::_exit(0) };
    }
    drop(b);
    pin(0);
    let mut region = Region::create(DEFAULT_RING).expect("region");
    send_with_fds(a.as_fd(), b"M", &[region.fd().expect("fd")]).expect("send memfd");
    drop(region.take_fd());
    let (mut p, mut c) = region.split(Side::Client, MAX_BODY);
    let body = [7u8; 16];
    let mut rtt = Vec::with_capacity(n);
    for id in 0..(n + n / 10) as u64 {
        let h = Header {
            kind: FrameKind::Request,
            body_len: 16,
            id,
            capacity: 16,
            cmd: 0,
            error: 0,
            result: 0,
            pad: [0, 0],
        };
        let t0 = Instant::now();
        push(&mut p, a.as_fd(), &h, &body);
        assert!(wait(&mut c, a.as_fd(), spin), "service gone");
        let got = c.pop().expect("ring");
        let dt = t0.elapsed();
        assert!(matches!(got, Some(caps::caps::shm::Record::Frame(r, _)) if r.id == id));
        if c.take_doorbell() {
            ring_doorbell(a.as_fd());
        }
        if id as usize >= n / 10 {
            rtt.push(dt.as_nanos() as f64 / 1000.0);
        }
    }
    drop(a);
    let mut st = 0;
    // SAFETY: reaping our child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    rtt.sort_by(f64::total_cmp);
    (rtt[rtt.len() / 2], rtt[rtt.len() * 99 / 100])
}

/// The floor: round trips of a counter between two processes through a
/// shared anonymous page, both spinning. p50 and p99 in µs.
fn floor(n: usize) -> (f64, f64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    // SAFETY: a fresh shared anonymous page, inherited by the child.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(m, libc::MAP_FAILED);
    // SAFETY: two 8-aligned words 128 bytes apart in the page, used only
    // as atomics by both processes; the page is never unmapped meanwhile.
    let (ping, pong) = unsafe {
        (
            &*m.cast::<AtomicU64>(),
            &*m.cast::<u8>().add(128).cast::<AtomicU64>(),
        )
    };
    // SAFETY: the child only spins on the page and exits with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        pin(1);
        loop {
            let v = ping.load(Ordering::Acquire);
            if v == u64::MAX {
                // SAFETY: ends the child.
                unsafe { libc::_exit(0) };
            }
            if v != pong.load(Ordering::Relaxed) {
                pong.store(v, Ordering::Release);
            }
            std::hint::spin_loop();
        }
    }
    pin(0);
    let mut rtt = Vec::with_capacity(n);
    for i in 1..=(n + n / 10) as u64 {
        let t0 = Instant::now();
        ping.store(i, Ordering::Release);
        while pong.load(Ordering::Acquire) != i {
            std::hint::spin_loop();
        }
        if i as usize > n / 10 {
            rtt.push(t0.elapsed().as_nanos() as f64 / 1000.0);
        }
    }
    ping.store(u64::MAX, Ordering::Release);
    let mut st = 0;
    // SAFETY: reaping our child; then nobody uses the page.
    unsafe {
        libc::waitpid(pid, &mut st, 0);
        libc::munmap(m, 4096);
    }
    rtt.sort_by(f64::total_cmp);
    (rtt[rtt.len() / 2], rtt[rtt.len() * 99 / 100])
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    // What making a region on a connection's first traffic costs: create,
    // size, seal and map it, then verify and map it as the peer would.
    let mut make = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        let mut r = Region::create(DEFAULT_RING).expect("region");
        let peer = Region::attach(r.take_fd().expect("fd"), DEFAULT_RING).expect("attach");
        make.push(t0.elapsed().as_nanos() as f64 / 1000.0);
        drop((r, peer));
    }
    make.sort_by(f64::total_cmp);
    println!(
        "region of 2 x {} KiB: create + seal + map, verify + map: p50 {:.1} us",
        DEFAULT_RING / 1024,
        make[make.len() / 2]
    );
    let (f50, f99) = floor(n);
    println!(
        "floor: shared-page counter ping-pong, 2 processes, cpus 0/1, spinning: {n} round trips, p50 {f50:.3} us, p99 {f99:.3} us"
    );
    for (name, spin, n) in [
        ("spin 50 us, then sleep", Duration::from_micros(50), n),
        ("sleep at once (doorbell path)", Duration::ZERO, n / 20),
    ] {
        let (p50, p99) = run(n, spin);
        println!(
            "shm ring ping-pong, 2 processes, cpus 0/1, {name}: {n} round trips, p50 {p50:.3} us, p99 {p99:.3} us ({:.1}x the floor's p50)",
            p50 / f50
        );
    }
}
