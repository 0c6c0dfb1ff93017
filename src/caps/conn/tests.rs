//! The connection layer over a `socketpair`: the test plays the client
//! on one end, the layer serves the other.

use std::cell::Cell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::limits::{BUDGET_PER_UID, Gate};
use super::stats;
use super::*;
use crate::caps::cred::Cred;
use crate::caps::errno::Errno;
use crate::caps::wire::{FrameKind, HEADER_LEN, HELLO_LEN, Header, Hello, HelloKind, WireError};

const VERSION: u16 = 7;
const MAX_BODY: u32 = 1000;

fn service() -> Service {
    // SAFETY: plain id query.
    let me = unsafe { libc::geteuid() };
    Service::new("conn_test", "svc".into(), me, VERSION, 4096, MAX_BODY)
}

/// A connected pair: (the client's end, blocking; the service's
/// connection on the other end, non-blocking).
pub(super) fn pair(svc: &mut Service) -> (OwnedFd, Connection) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0);
    // SAFETY: two new descriptors nobody else owns.
    let (client, server) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    set_nonblocking(server.as_raw_fd());
    let peer = Cred::of_peer(server.as_raw_fd()).unwrap();
    (client, svc.open(server, peer))
}

fn send(fd: &OwnedFd, b: &[u8]) {
    client::write_all(fd.as_raw_fd(), b).unwrap();
}

fn client_hello(status: u32) -> [u8; HELLO_LEN] {
    Hello {
        version: VERSION,
        kind: HelloKind::Client,
        max_msgsize: 4096,
        status,
    }
    .encode()
}

/// The server's hello as the client reads it.
fn server_hello(fd: &OwnedFd) -> Hello {
    let mut b = [0u8; HELLO_LEN];
    read_exact_timeout(fd.as_raw_fd(), &mut b, 5000).unwrap();
    Hello::decode(&b, HelloKind::Server, VERSION).unwrap()
}

fn admit_all(svc: &mut Service, c: &mut Connection) -> Admission {
    svc.admit(c, |_, _| true, |_| {})
}

/// An admitted connection.
fn admitted(svc: &mut Service) -> (OwnedFd, Connection) {
    let (cl, mut c) = pair(svc);
    send(&cl, &client_hello(0));
    assert_eq!(admit_all(svc, &mut c), Admission::Admitted);
    assert_eq!(server_hello(&cl).status, 0);
    (cl, c)
}

fn request(id: u64, body_len: u32) -> [u8; HEADER_LEN] {
    Header {
        capacity: body_len,
        ..Header::new(FrameKind::Request, id, body_len)
    }
    .encode()
}

#[test]
fn hello_admits_and_greets() {
    let mut svc = service();
    let (cl, mut c) = pair(&mut svc);
    assert_eq!(admit_all(&mut svc, &mut c), Admission::Waiting);
    assert!(!c.hello_done());
    send(&cl, &client_hello(0));
    let greeted = Cell::new(false);
    let got = svc.admit(
        &mut c,
        |_, _| true,
        |tx| {
            greeted.set(true);
            tx.push_frame(&Header::new(FrameKind::Gen, 0, 0), &[]);
        },
    );
    assert_eq!(got, Admission::Admitted);
    assert!(greeted.get() && c.hello_done() && c.hello_due().is_none());
    let h = server_hello(&cl);
    assert_eq!((h.status, h.max_msgsize, h.version), (0, 4096, VERSION));
    // The greeting follows the hello.
    let mut b = [0u8; HEADER_LEN];
    read_exact_timeout(cl.as_raw_fd(), &mut b, 5000).unwrap();
    assert_eq!(Header::decode(&b, 0).unwrap().kind, FrameKind::Gen);
}

#[test]
fn hello_in_pieces() {
    let mut svc = service();
    let (cl, mut c) = pair(&mut svc);
    let hello = client_hello(0);
    for piece in hello[..HELLO_LEN - 1].chunks(5) {
        send(&cl, piece);
        assert_eq!(admit_all(&mut svc, &mut c), Admission::Waiting);
    }
    send(&cl, &hello[HELLO_LEN - 1..]);
    assert_eq!(admit_all(&mut svc, &mut c), Admission::Admitted);
    assert_eq!(server_hello(&cl).status, 0);
}

#[test]
fn admission_rule_sees_the_kernels_credentials_and_the_hello() {
    let mut svc = service();
    let (cl, mut c) = pair(&mut svc);
    send(&cl, &client_hello(0x55));
    let seen = Cell::new(None);
    let got = svc.admit(
        &mut c,
        |h, peer| {
            seen.set(Some((h.status, peer.pid, peer.uid)));
            false
        },
        |_| panic!("a refused client is not greeted"),
    );
    assert_eq!(got, Admission::Closed);
    // SAFETY: plain id queries.
    let me = unsafe { (libc::getpid(), libc::geteuid()) };
    assert_eq!(seen.get(), Some((0x55, me.0, me.1)));
    assert_eq!(server_hello(&cl).status, Errno::EACCES.0 as u32);
    assert!(!c.hello_done());
}

#[test]
fn malformed_hello_is_answered_eproto() {
    let mut svc = service();
    let (cl, mut c) = pair(&mut svc);
    let mut bad = client_hello(0);
    bad[0] ^= 0xff;
    send(&cl, &bad);
    assert_eq!(
        svc.admit(&mut c, |_, _| panic!("not asked"), |_| {}),
        Admission::Closed
    );
    assert_eq!(server_hello(&cl).status, Errno::EPROTO.0 as u32);
}

#[test]
fn peer_gone_before_its_hello() {
    let mut svc = service();
    let (cl, mut c) = pair(&mut svc);
    send(&cl, &client_hello(0)[..3]);
    drop(cl);
    assert_eq!(admit_all(&mut svc, &mut c), Admission::Closed);
}

#[test]
fn frame_arriving_in_pieces() {
    let mut svc = service();
    let (cl, mut c) = admitted(&mut svc);
    let head = request(9, 300);
    let body: Vec<u8> = (0..300).map(|i| i as u8).collect();
    for piece in [&head[..10], &head[10..], &body[..1], &body[1..200]] {
        send(&cl, piece);
        c.tx.ready(EV_IN).unwrap();
        assert_eq!(c.next_frame(&mut svc), Ok(None));
    }
    send(&cl, &body[200..]);
    c.tx.ready(EV_IN).unwrap();
    let (h, got) = c.next_frame(&mut svc).unwrap().unwrap();
    assert_eq!((h.kind, h.id, h.body_len), (FrameKind::Request, 9, 300));
    assert_eq!(got, body);
    assert_eq!(c.next_frame(&mut svc), Ok(None));
}

#[test]
fn oversized_frame_is_a_protocol_error() {
    let mut svc = service();
    let (cl, mut c) = admitted(&mut svc);
    send(&cl, &request(1, MAX_BODY));
    send(&cl, &vec![0u8; MAX_BODY as usize]);
    assert!(matches!(c.next_frame(&mut svc), Ok(Some(_))));
    send(&cl, &request(2, MAX_BODY + 1));
    c.tx.ready(EV_IN).unwrap();
    assert_eq!(
        c.next_frame(&mut svc),
        Err(ReadEnd::Protocol(WireError::TooLarge(
            u64::from(MAX_BODY) + 1
        )))
    );
}

#[test]
fn peer_death_mid_frame_is_eof() {
    let mut svc = service();
    let (cl, mut c) = admitted(&mut svc);
    send(&cl, &request(3, 100));
    send(&cl, &[1u8; 40]);
    drop(cl);
    c.tx.ready(EV_IN).unwrap();
    // What came is read (a short read: the socket is empty for now)...
    assert_eq!(c.next_frame(&mut svc), Ok(None));
    // ...and the end of the connection is the next readiness.
    c.tx.ready(EV_IN).unwrap();
    assert_eq!(c.next_frame(&mut svc), Err(ReadEnd::Eof));
}

#[test]
fn writes_to_a_dead_peer_fail() {
    let mut svc = service();
    let (cl, mut c) = admitted(&mut svc);
    drop(cl);
    c.tx.push_frame(&Header::new(FrameKind::Reply, 1, 0), &[]);
    // The first send may still be taken by the socket; a later one tells.
    let r = c.tx.flush().and_then(|()| {
        c.tx.push_frame(&Header::new(FrameKind::Reply, 2, 0), &[]);
        c.tx.flush()
    });
    assert_eq!(r, Err(Errno::EPIPE));
}

#[test]
fn gate_limits_connections_per_uid() {
    let owner = 1000;
    let mut g = Gate::new(owner);
    let peer = |uid| Cred {
        pid: 1,
        uid,
        gid: uid,
        groups: Vec::new(),
    };
    let mut n = 0;
    while g.admit("conn_test", &"svc", &peer(4242)) {
        n += 1;
        assert!(n <= 1 << 20, "no limit");
    }
    assert!(n >= 4);
    // Another uid, root and the owner are not held back by 4242's count.
    assert!(g.admit("conn_test", &"svc", &peer(4243)));
    for _ in 0..n + 1 {
        assert!(g.admit("conn_test", &"svc", &peer(0)));
        assert!(g.admit("conn_test", &"svc", &peer(owner)));
    }
    g.release(4242);
    assert!(g.admit("conn_test", &"svc", &peer(4242)));
    assert!(!g.admit("conn_test", &"svc", &peer(4242)));
}

#[test]
fn budget_pauses_and_removal_frees() {
    let mut svc = Service::new("conn_test", "svc".into(), 0, VERSION, 4096, MAX_BODY);
    let (_cl, mut c) = pair(&mut svc);
    let (_cl2, mut c2) = pair(&mut svc);
    // Both are this process's uid; as the owner here is root, a non-root
    // test run has a per-uid share, a root one only the total.
    assert!(svc.may_read(&c));
    assert!(!svc.account(&mut c, BUDGET_PER_UID * 5));
    assert!(!svc.may_read(&c2), "over the total, nobody reads");
    assert_eq!(svc.stats.held_memory_budget, 1, "going over is counted");
    assert!(!svc.account(&mut c, BUDGET_PER_UID * 6));
    assert_eq!(svc.stats.held_memory_budget, 1, "once per crossing");
    assert_eq!(svc.stats.deepest_queue_bytes, (BUDGET_PER_UID * 6) as u64);
    assert!(svc.account(&mut c, 10), "shrinking says so");
    assert!(svc.may_read(&c2));
    assert!(!svc.account(&mut c2, BUDGET_PER_UID * 5));
    assert_eq!(svc.stats.held_memory_budget, 2);
    svc.ended(&mut c2, None);
    assert!(
        svc.may_read(&c),
        "a removed connection's bytes are released"
    );
    assert!(c2.tx.dead);
}

#[test]
fn accept_gives_the_kernels_credentials() {
    let dir = std::env::temp_dir().join(format!("conn-accept-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    l.set_nonblocking(true).unwrap();
    let mut svc = service();
    assert!(svc.accept(l.as_raw_fd()).is_none(), "nothing pending");
    let cl = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let c = svc.accept(l.as_raw_fd()).expect("accepted");
    // SAFETY: plain id queries.
    let me = unsafe { (libc::getpid(), libc::geteuid()) };
    assert_eq!((c.peer.pid, c.peer.uid), me);
    assert!(c.hello_due().is_some());
    drop(cl);
    let _ = std::fs::remove_dir_all(&dir);
}

fn frame(kind: FrameKind, id: u64) -> [u8; HEADER_LEN] {
    Header::new(kind, id, 0).encode()
}

/// The next frame the client reads.
fn read_frame(fd: &OwnedFd) -> (Header, Vec<u8>) {
    let mut b = [0u8; HEADER_LEN];
    read_exact_timeout(fd.as_raw_fd(), &mut b, 5000).unwrap();
    let h = Header::decode(&b, 1 << 20).unwrap();
    let mut body = vec![0u8; h.body_len as usize];
    read_exact_timeout(fd.as_raw_fd(), &mut body, 5000).unwrap();
    (h, body)
}

#[test]
fn ping_and_stat_are_answered_by_the_layer_and_never_returned() {
    let mut svc = service();
    let (cl, mut c) = admitted(&mut svc);
    send(&cl, &request(1, 10));
    send(&cl, &[7u8; 10]);
    send(&cl, &frame(FrameKind::Ping, 5));
    send(&cl, &frame(FrameKind::Stat, 6));
    send(&cl, &request(2, 0));
    c.tx.ready(EV_IN).unwrap();
    let (h1, _) = c.next_frame(&mut svc).unwrap().unwrap();
    let (h2, _) = c.next_frame(&mut svc).unwrap().unwrap();
    assert_eq!((h1.id, h2.id), (1, 2), "the face gets the requests only");
    assert_eq!(c.next_frame(&mut svc), Ok(None));
    let (p, body) = read_frame(&cl);
    assert_eq!(
        (p.kind, p.id, p.error, body.len()),
        (FrameKind::Ping, 5, 0, 0)
    );
    let (s, body) = read_frame(&cl);
    assert_eq!((s.kind, s.id, s.error), (FrameKind::Stat, 6, 0));
    let st = crate::caps::wire::Counters::decode(&body).unwrap();
    // At the stat: the hello, one request of 10 bytes, the ping, the stat.
    assert_eq!(st.get("requests"), 1);
    assert_eq!(st.get("pings"), 1);
    assert_eq!(st.get("stats"), 1);
    assert_eq!(
        st.get("bytes_in"),
        (HELLO_LEN + HEADER_LEN + 10 + 2 * HEADER_LEN) as u64
    );
    assert_eq!(st.get("bytes_out"), (HELLO_LEN + HEADER_LEN) as u64);
    assert_eq!(
        (st.get("connections_now"), st.get("connections_total")),
        (1, 1)
    );
    // A stat with a payload is a protocol error.
    send(&cl, &Header::new(FrameKind::Stat, 7, 4).encode());
    send(&cl, &[0u8; 4]);
    c.tx.ready(EV_IN).unwrap();
    assert!(matches!(
        c.next_frame(&mut svc),
        Err(ReadEnd::Protocol(WireError::BadField("stat body_len", 4)))
    ));
    svc.ended(&mut c, None);
    assert_eq!(svc.stats.connections_now, 0);
}

#[test]
fn answers_a_peer_does_not_read_hold_its_connection_back() {
    let mut svc = service();
    let (cl, mut c) = admitted(&mut svc);
    set_nonblocking(cl.as_raw_fd());
    let pings: Vec<u8> = (0..1024u64)
        .flat_map(|i| frame(FrameKind::Ping, i))
        .collect();
    let mut rounds = 0;
    while svc.may_read(&c) {
        rounds += 1;
        assert!(rounds < 10_000, "never held back");
        // As many pings as the socket takes; the answers are never read.
        // SAFETY: a valid buffer.
        unsafe {
            libc::send(
                cl.as_raw_fd(),
                pings.as_ptr().cast(),
                pings.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        c.tx.ready(EV_IN).unwrap();
        assert_eq!(c.next_frame(&mut svc), Ok(None));
    }
    let held = c.tx.queued();
    assert!(
        (stats::INTERNAL_OUT_MAX..stats::INTERNAL_OUT_MAX + HEADER_LEN).contains(&held),
        "{held} bytes held"
    );
    // Nothing more is read while held back...
    let pings_then = svc.stats.pings;
    c.tx.ready(EV_IN).unwrap();
    assert_eq!(c.next_frame(&mut svc), Ok(None));
    assert_eq!(svc.stats.pings, pings_then);
    // ...and reading the answers releases it.
    let mut sink = vec![0u8; 1 << 16];
    let mut drained = 0;
    for _ in 0..100_000 {
        c.tx.flush().unwrap();
        // SAFETY: `sink` is writable for its length.
        let n = unsafe {
            libc::recv(
                cl.as_raw_fd(),
                sink.as_mut_ptr().cast(),
                sink.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 && c.tx.queued() == 0 {
            break;
        }
        drained += n.max(0) as usize;
    }
    assert!(drained > held);
    assert!(svc.may_read(&c));
    c.tx.ready(EV_IN).unwrap();
    let _ = c.next_frame(&mut svc);
    assert!(svc.stats.pings > pings_then, "read again once released");
}

/// A peer that sends pings as fast as it reads the answers does not keep
/// the service on its connection: a call answers at most `TURN` library
/// frames, says it stopped there, and the next call goes on.
#[test]
fn pings_answered_per_call_are_bounded() {
    let mut svc = service();
    let (cl, mut c) = admitted(&mut svc);
    let n = 3 * TURN as u64 + 5;
    let pings: Vec<u8> = (0..n).flat_map(|i| frame(FrameKind::Ping, i)).collect();
    send(&cl, &pings);
    send(&cl, &request(1, 0));
    c.tx.ready(EV_IN).unwrap();
    let mut cut = 0;
    let got = loop {
        let before = svc.stats.pings;
        match c.next_frame(&mut svc).unwrap() {
            Some((h, _)) => break h,
            None => {
                assert!(c.turn_cut(), "stopped with pings unanswered");
                assert_eq!(svc.stats.pings - before, TURN as u64);
                cut += 1;
                assert!(cut <= 3, "{} of {n} pings answered", svc.stats.pings);
            }
        }
    };
    assert_eq!((got.kind, got.id, cut), (FrameKind::Request, 1, 3));
    assert_eq!(svc.stats.pings, n);
    assert!(!c.turn_cut());
    for i in 0..n {
        assert_eq!(read_frame(&cl).0.id, i);
    }
}

#[test]
fn ended_counts_only_the_peers_protocol_violations() {
    let mut svc = service();
    let (_a, mut c1) = admitted(&mut svc);
    let (_b, mut c2) = admitted(&mut svc);
    let (_d, mut c3) = admitted(&mut svc);
    assert_eq!(svc.stats.connections_now, 3);
    svc.ended(&mut c1, None);
    svc.ended(&mut c2, Some(&ReadEnd::Eof));
    assert_eq!(
        (svc.stats.protocol_errors, svc.stats.dropped_bad_frame),
        (0, 0),
        "an end that is no violation is not counted"
    );
    let why = ReadEnd::Protocol(WireError::Unexpected("test"));
    svc.ended(&mut c3, Some(&why));
    assert_eq!(
        (svc.stats.protocol_errors, svc.stats.dropped_bad_frame),
        (1, 1)
    );
    assert_eq!(svc.stats.connections_now, 0);
    assert!(c1.tx.dead && c2.tx.dead && c3.tx.dead);
}

#[test]
fn hello_sweep_selects_the_overdue_and_counts_the_dropped() {
    let mut svc = service();
    let (_a, mut late) = pair(&mut svc);
    let (_b, fresh) = pair(&mut svc);
    let (_d, mut done) = admitted(&mut svc);
    let past = std::time::Instant::now() - 2 * HELLO_DEADLINE;
    late.tx.since = past;
    done.tx.since = past;
    let conns = [(1, &late), (2, &fresh), (3, &done)];
    let mut sweep = HelloSweep::select(conns);
    assert_eq!(sweep.take(), vec![1], "only a hello past its deadline");
    sweep.dropped(&late);
    svc.ended(&mut late, None);
    sweep.finish(&mut svc);
    assert_eq!(svc.stats.dropped_hello_deadline, 1);
    let empty: [(u8, &Connection); 0] = [];
    HelloSweep::select(empty).finish(&mut svc);
    assert_eq!(svc.stats.dropped_hello_deadline, 1);
}

/// A connection holds a read buffer only while it has bytes to consume
/// and an output buffer only while output waits: once its request is
/// read and its reply written, it holds no buffer at all (issue 17).
#[test]
fn a_quiet_connection_holds_no_buffers() {
    let mut svc = service();
    let (cl, mut c) = admitted(&mut svc);
    assert_eq!(c.next_frame(&mut svc).unwrap(), None);
    assert_eq!(c.tx.buffer_bytes(), 0, "after the hello");
    // A request in two pieces: the partial frame is the reader's.
    let mut req = request(1, 600).to_vec();
    req.extend([7u8; 600]);
    send(&cl, &req[..100]);
    assert_eq!(c.next_frame(&mut svc).unwrap(), None);
    assert!(c.tx.buffer_bytes() < 1024, "{}", c.tx.buffer_bytes());
    send(&cl, &req[100..]);
    c.tx.input_ready();
    let (h, body) = c.next_frame(&mut svc).unwrap().unwrap();
    assert_eq!((h.id, body.len()), (1, 600));
    assert_eq!(c.next_frame(&mut svc).unwrap(), None);
    // A reply bigger than what is kept once written.
    c.send(
        Some(&mut svc),
        &Header::new(FrameKind::Reply, 1, 3000),
        &[9u8; 3000],
    );
    assert!(c.tx.buffer_bytes() >= 3000);
    c.tx.flush().unwrap();
    assert_eq!(c.tx.queued(), 0);
    let mut got = vec![0u8; HEADER_LEN + 3000];
    read_exact_timeout(cl.as_raw_fd(), &mut got, 5000).unwrap();
    assert_eq!(c.tx.buffer_bytes(), 0, "quiet again");
}

/// Issue 17: a frame read from the socket takes the payload buffer of one
/// the face consumed (no allocation per frame); a quiet connection keeps
/// none.
#[test]
fn socket_frames_reuse_consumed_payload_buffers() {
    let mut svc = service();
    let (cl, mut c) = admitted(&mut svc);
    let payload =
        |id: u64, n: usize| -> Vec<u8> { (0..n).map(|i| (i as u64 + id) as u8).collect() };
    send(&cl, &request(1, 64));
    send(&cl, &payload(1, 64));
    c.tx.ready(EV_IN).unwrap();
    let (_, first) = c.next_frame(&mut svc).unwrap().unwrap();
    let kept = first.as_ptr();
    c.tx.recycle(first);
    send(&cl, &request(2, 40));
    send(&cl, &payload(2, 40));
    c.tx.ready(EV_IN).unwrap();
    let (h, got) = c.next_frame(&mut svc).unwrap().unwrap();
    assert_eq!((h.id, &got), (2, &payload(2, 40)));
    assert_eq!(got.as_ptr(), kept, "the consumed buffer was reused");
    c.tx.recycle(got);
    assert_eq!(c.tx.spare_bodies(), 1);
    // A v1 client keeps one more than it has requests outstanding.
    c.tx.recycle_upto(vec![0; 64], 1);
    assert_eq!(c.tx.spare_bodies(), 1, "one kept already");
    c.tx.recycle_upto(vec![0; 64], 2);
    assert_eq!(c.tx.spare_bodies(), 2);
    c.tx.quiet_bodies();
    assert_eq!(c.tx.buffer_bytes(), 0);
}
