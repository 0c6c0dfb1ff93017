//! CAPS v2 dispose notices: what a service sees when its clients read
//! replies, and how they travel. A client and a service that agreed in
//! the hello (`HELLO_DISPOSES`) coalesce them: the dispose of a reply read
//! goes with the client's next request (its `result` field), or several
//! go in one `Disposes` frame (kind 7), never later than the client's next
//! call that finds nothing to take; peers without the option send and get
//! one `Dispose` frame per reply (docs/wire-protocol.md, "Coalesced
//! disposes"). Raw sockets play the old and the hostile peers.

use caps::abi::{CAPF_WORLD, CAPMS_DISPOSE, CAPMS_REPLY, CAPMS_REQUEST};
use caps::capi::caps::{caps_sys_close, caps_sys_put};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

mod v2calls;
use v2calls::{errno, me, open, recv, reply};

/// The hello option (`wire::HELLO_DISPOSES`).
const DISPOSES: u32 = 0x1000_0000;
/// Frame kinds.
const REQUEST: u16 = 1;
const REPLY: u16 = 2;
const DISPOSE: u16 = 3;
const GEN: u16 = 4;
const STAT: u16 = 6;
const LIST: u16 = 7;
/// What a raw peer waits for an answer at most (a failure, not a
/// measurement: a hang ends the test with a message).
const PATIENCE: Duration = Duration::from_secs(20);

// ---- the calls ------------------------------------------------------------

/// Every test first: the directory, the watchdog, and the tests one at a
/// time (a client thread of one test asleep in `caps_sys_wait` makes
/// every other client of the process send its disposes at once).
fn setup() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let d = std::env::temp_dir().join(format!("lcsysdisp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        // SAFETY: called once, before any thread reads the environment
        // through the library (every test calls setup() first).
        unsafe { std::env::set_var("LIBCAPS_DIR", &d) };
        // A hang in a blocking call ends the test program.
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(120));
            eprintln!("caps_sys_dispose: still running after 120 s: something hangs");
            std::process::abort();
        });
    });
    guard
}

fn put(id: i32, data: &[u8]) -> Result<i64, i32> {
    // SAFETY: `data` is readable for its length; it is only read.
    let r = unsafe { caps_sys_put(id, data.as_ptr() as *mut _, data.len() as i32) };
    if r < 0 { Err(errno()) } else { Ok(r) }
}

fn close(id: i32) {
    // SAFETY: a plain call.
    assert_eq!(unsafe { caps_sys_close(id) }, 0);
}

/// The next message of service `sid` (waiting for it), of `state`.
fn next(sid: i32, state: u32) -> i64 {
    let (id, got) = recv(sid, true).expect("service wait");
    assert_eq!(got, state, "message {id}");
    id
}

// ---- raw peers ------------------------------------------------------------

fn sys_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("LIBCAPS_DIR").unwrap()).join("sys")
}

/// A 16-byte hello of `kind` (1 client, 2 server) with `status`.
fn hello(kind: u16, status: u32) -> Vec<u8> {
    let mut b = b"CAPS".to_vec();
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&131072u32.to_le_bytes());
    b.extend_from_slice(&status.to_le_bytes());
    b
}

/// A frame: header of `kind` with `id` and `result`, then `body` (a
/// request's capacity is its length).
fn frame(kind: u16, id: u64, result: u64, body: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[0..2].copy_from_slice(&kind.to_le_bytes());
    b[4..8].copy_from_slice(&(body.len() as u32).to_le_bytes());
    b[8..16].copy_from_slice(&id.to_le_bytes());
    if kind == REQUEST {
        b[16..20].copy_from_slice(&(body.len() as u32).to_le_bytes());
    }
    b[32..40].copy_from_slice(&result.to_le_bytes());
    b.extend_from_slice(body);
    b
}

/// A `Disposes` frame listing `ids`.
fn list(ids: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    frame(LIST, 0, 0, &body)
}

/// A frame read from a raw peer's socket: kind, id, result, body.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    kind: u16,
    id: u64,
    result: u64,
    body: Vec<u8>,
}

fn read_frame(s: &mut UnixStream) -> Frame {
    let mut h = [0u8; 48];
    s.read_exact(&mut h).expect("a frame");
    let mut body = vec![0u8; u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize];
    s.read_exact(&mut body).expect("its payload");
    Frame {
        kind: u16::from_le_bytes([h[0], h[1]]),
        id: u64::from_le_bytes(h[8..16].try_into().unwrap()),
        result: u64::from_le_bytes(h[32..40].try_into().unwrap()),
        body,
    }
}

fn ids_of(f: &Frame) -> Vec<u64> {
    assert_eq!(f.kind, LIST, "{f:?}");
    f.body
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// A raw service `name` of ours: a listener in the services directory (a
/// real service made the directory). `serve` gets the accepted socket
/// after the hellos (the client's status is passed to `answer`, whose
/// result is our hello's status) and our generation frame.
fn raw_service<T: Send + 'static>(
    name: &str,
    answer: fn(u32) -> u32,
    serve: impl FnOnce(u32, UnixStream) -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let real = open(&format!("{name}_dir"), true);
    let (uid, gid) = me();
    let l = UnixListener::bind(sys_dir().join(format!("{name},{uid},{gid}"))).unwrap();
    close(real);
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut h = [0u8; 16];
        s.read_exact(&mut h).unwrap();
        let status = u32::from_le_bytes(h[12..16].try_into().unwrap());
        s.write_all(&[hello(2, answer(status)), frame(GEN, 0, 0, &[])].concat())
            .unwrap();
        serve(status, s)
    })
}

/// A raw client of the real service `name`, offering `status` in its
/// hello: the socket and the service's answer, after its generation frame.
fn raw_client(name: &str, status: u32) -> (UnixStream, u32) {
    let (uid, gid) = me();
    let mut s = UnixStream::connect(sys_dir().join(format!("{name},{uid},{gid}"))).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(&hello(1, status)).unwrap();
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    let answer = u32::from_le_bytes(h[12..16].try_into().unwrap());
    assert_eq!(read_frame(&mut s).kind, GEN);
    (s, answer)
}

/// Send a request `id` and read its reply.
fn round_trip(s: &mut UnixStream, id: u64, result: u64) {
    s.write_all(&frame(REQUEST, id, result, b"q")).unwrap();
    let r = read_frame(s);
    assert_eq!((r.kind, r.id), (REPLY, id));
}

/// A service thread: answers every request, notes every dispose notice,
/// until it saw `disposes` of them. Returns (requests, disposes) by
/// service id.
fn serve(sid: i32, until: usize) -> std::thread::JoinHandle<(Vec<i64>, Vec<i64>)> {
    std::thread::spawn(move || {
        let (mut requests, mut disposes) = (Vec::new(), Vec::new());
        while disposes.len() < until {
            let (id, state) = recv(sid, true).expect("service wait");
            match state {
                CAPMS_REQUEST => {
                    requests.push(id);
                    reply(sid, b"ok", id);
                }
                CAPMS_DISPOSE => disposes.push(id),
                other => panic!("service: state {other}"),
            }
        }
        (requests, disposes)
    })
}

// ---- the tests ------------------------------------------------------------

/// A client offers the option; to a service that agrees, the disposes of
/// the replies it read go with its next request (the last in `result`,
/// the others in a list before it), and when it has nothing outstanding
/// any more they go at once, in the order the replies were read.
#[test]
fn client_coalesces_disposes_when_the_service_agreed() {
    let _serial = setup();
    let (got_last, last_read) = std::sync::mpsc::channel();
    let server = raw_service(
        "coal",
        |_| DISPOSES,
        move |offered, mut s| {
            let reqs: Vec<Frame> = (0..4).map(|_| read_frame(&mut s)).collect();
            assert!(reqs.iter().all(|r| (r.kind, r.result) == (REQUEST, 0)));
            // One write: the client reads the three replies at once.
            let replies: Vec<u8> = [3, 1, 2]
                .iter()
                .flat_map(|&id| frame(REPLY, id, 0, b"r"))
                .collect();
            s.write_all(&replies).unwrap();
            // The client read 3, 1 and 2 and puts request 5.
            let first = read_frame(&mut s);
            let req = read_frame(&mut s);
            s.write_all(&[frame(REPLY, 4, 0, b"r"), frame(REPLY, 5, 0, b"r")].concat())
                .unwrap();
            // It read 4 and 5: nothing outstanding, so no dispose waits.
            let last = read_frame(&mut s);
            got_last.send(()).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            (
                offered,
                ids_of(&first),
                (req.kind, req.id, req.result),
                ids_of(&last),
                rest,
            )
        },
    );
    let c = open("coal", false);
    for want in 1..=4 {
        assert_eq!(put(c, b"q"), Ok(want));
    }
    for want in [3, 1, 2] {
        assert_eq!(recv(c, true), Ok((want, CAPMS_REPLY)));
    }
    assert_eq!(put(c, b"q"), Ok(5));
    for want in [4, 5] {
        assert_eq!(recv(c, true), Ok((want, CAPMS_REPLY)));
    }
    // The last disposes reach the service while the client is open.
    last_read
        .recv_timeout(PATIENCE)
        .expect("the disposes of 4 and 5 before the client closes");
    close(c);
    let (offered, first, req, last, rest) = server.join().unwrap();
    assert_ne!(offered & DISPOSES, 0, "the client offers the option");
    assert_eq!(first, [3, 1]);
    assert_eq!(req, (REQUEST, 5, 2));
    assert_eq!(last, [4, 5]);
    assert!(rest.is_empty(), "nothing more: {rest:?}");
}

/// To a service that did not agree (an older library), the client sends
/// one `Dispose` frame per reply, as it reads it, and requests without a
/// dispose in them.
#[test]
fn a_service_without_the_option_gets_a_dispose_frame_per_reply() {
    let _serial = setup();
    let server = raw_service(
        "old_svc",
        |_| 0,
        |_, mut s| {
            let reqs: Vec<Frame> = (0..2).map(|_| read_frame(&mut s)).collect();
            s.write_all(&[frame(REPLY, 2, 0, b"r"), frame(REPLY, 1, 0, b"r")].concat())
                .unwrap();
            let got: Vec<Frame> = (0..3).map(|_| read_frame(&mut s)).collect();
            (reqs, got)
        },
    );
    let c = open("old_svc", false);
    assert_eq!(put(c, b"q"), Ok(1));
    assert_eq!(put(c, b"q"), Ok(2));
    assert_eq!(recv(c, true), Ok((2, CAPMS_REPLY)));
    assert_eq!(recv(c, true), Ok((1, CAPMS_REPLY)));
    assert_eq!(put(c, b"q"), Ok(3));
    let (reqs, got) = server.join().unwrap();
    close(c);
    assert!(reqs.iter().all(|r| (r.kind, r.result) == (REQUEST, 0)));
    let seen: Vec<_> = got.iter().map(|f| (f.kind, f.id, f.result)).collect();
    assert_eq!(seen, [(DISPOSE, 2, 0), (DISPOSE, 1, 0), (REQUEST, 3, 0)]);
}

/// A client without the option (an older library) is served as before:
/// the service's hello does not agree to it, its `Dispose` frames become
/// notices in order.
#[test]
fn an_old_client_is_served_with_a_dispose_frame_per_reply() {
    let _serial = setup();
    let sid = open("old_cli", true);
    let svc = serve(sid, 3);
    let (mut s, answer) = raw_client("old_cli", CAPF_WORLD as u32);
    assert_eq!(answer, 0, "no option agreed that was not offered");
    round_trip(&mut s, 1, 0);
    round_trip(&mut s, 2, 0);
    s.write_all(&[frame(DISPOSE, 2, 0, &[]), frame(DISPOSE, 1, 0, &[])].concat())
        .unwrap();
    // A third round trip: the disposes were read before its request.
    round_trip(&mut s, 3, 0);
    // Its reply is disposed of when the connection ends.
    drop(s);
    let (requests, disposes) = svc.join().unwrap();
    close(sid);
    assert_eq!(requests.len(), 3);
    assert_eq!(disposes, [requests[1], requests[0], requests[2]]);
}

/// The service's hello agrees to an offered option, and then takes
/// disposes in requests and in lists, as notices in their order.
#[test]
fn a_service_takes_coalesced_disposes_in_order() {
    let _serial = setup();
    let sid = open("new_svc", true);
    let svc = serve(sid, 5);
    let (mut s, answer) = raw_client("new_svc", CAPF_WORLD as u32 | DISPOSES);
    assert_eq!(answer, DISPOSES);
    for id in 1..=4 {
        round_trip(&mut s, id, 0);
    }
    s.write_all(&list(&[3, 1, 4])).unwrap();
    round_trip(&mut s, 5, 2);
    drop(s);
    let (r, disposes) = svc.join().unwrap();
    close(sid);
    assert_eq!(r.len(), 5);
    assert_eq!(disposes, [r[2], r[0], r[3], r[1], r[4]]);
}

/// A peer that sends disposes the service cannot take loses its
/// connection (one log line, counted as a bad frame), and only it: every
/// reply the service sent still gets exactly one dispose notice (from
/// the frame, or from the end of the connection).
#[test]
fn bad_coalesced_disposes_drop_only_that_connection() {
    let _serial = setup();
    let sid = open("hostile", true);
    let with = CAPF_WORLD as u32 | DISPOSES;
    let without = CAPF_WORLD as u32;
    let mut overflow: Vec<u64> = vec![1];
    overflow.extend(2..=131);
    let mut odd = list(&[1]);
    odd[4] = 12;
    odd.extend_from_slice(&[0; 4]);
    let mut with_id = list(&[1]);
    with_id[8] = 1;
    let cases: Vec<(&str, u32, Vec<u8>)> = vec![
        ("a list naming no reply", with, list(&[9])),
        ("an id twice", with, list(&[1, 1])),
        ("more ids than can be in flight", with, list(&overflow)),
        ("an empty list", with, frame(LIST, 0, 0, &[])),
        ("a list not a multiple of 8 bytes", with, odd),
        ("a list with an id", with, with_id),
        (
            "a request disposing of no reply",
            with,
            frame(REQUEST, 2, 9, b"q"),
        ),
        (
            "a request disposing of itself",
            with,
            frame(REQUEST, 2, 2, b"q"),
        ),
        ("a list without the option", without, list(&[1])),
        (
            "a request's dispose without the option",
            without,
            frame(REQUEST, 2, 1, b"q"),
        ),
    ];
    // One reply to each of them and to a good client: as many notices.
    let svc = serve(sid, cases.len() + 1);
    for (what, status, bad) in &cases {
        let (mut s, _) = raw_client("hostile", *status);
        round_trip(&mut s, 1, 0);
        s.write_all(bad).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .unwrap_or_else(|e| panic!("{what}: not dropped ({e})"));
        assert!(rest.is_empty(), "{what}: the service answered {rest:?}");
    }
    // Counted as bad frames (a stat of the owner's, on a fresh connection).
    let (mut s, _) = raw_client("hostile", without);
    s.write_all(&frame(STAT, 1, 0, &[])).unwrap();
    let st = read_frame(&mut s);
    let dropped = u64::from_le_bytes(st.body[8 + 8 * 11..8 + 8 * 12].try_into().unwrap());
    assert_eq!(dropped, cases.len() as u64, "dropped_bad_frame");
    // Everyone else is still served, with coalesced disposes.
    let c = open("hostile", false);
    assert!(put(c, b"ok?").is_ok());
    assert_eq!(recv(c, true).map(|(_, st)| st), Ok(CAPMS_REPLY));
    close(c);
    drop(s);
    let (requests, mut disposes) = svc.join().unwrap();
    close(sid);
    assert_eq!(requests.len(), cases.len() + 1);
    disposes.sort_unstable();
    let mut want = requests.clone();
    want.sort_unstable();
    assert_eq!(disposes, want, "one notice per reply");
}

/// A dispose is never owed while the client waits: a service that
/// replies to a second request only once the first reply's dispose came
/// still answers a client that waits (`caps_sys_wait`) or polls
/// (`caps_sys_get`) for that second reply.
#[test]
fn a_client_that_waits_owes_no_dispose() {
    let _serial = setup();
    for (name, block) in [("owe_wait", true), ("owe_poll", false)] {
        let sid = open(name, true);
        let svc = std::thread::spawn(move || {
            let a = next(sid, CAPMS_REQUEST);
            let b = next(sid, CAPMS_REQUEST);
            reply(sid, b"a", a);
            assert_eq!(next(sid, CAPMS_DISPOSE), a);
            reply(sid, b"b", b);
            assert_eq!(next(sid, CAPMS_DISPOSE), b);
            close(sid);
        });
        let c = open(name, false);
        let a = put(c, b"a").unwrap();
        let b = put(c, b"b").unwrap();
        for want in [a, b] {
            let deadline = Instant::now() + PATIENCE;
            let got = loop {
                match recv(c, block) {
                    Err(libc::EAGAIN) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    r => break r,
                }
            };
            assert_eq!(got, Ok((want, CAPMS_REPLY)), "{name}");
        }
        svc.join().unwrap();
        close(c);
    }
}

/// The limit of 129 requests in flight keeps its meaning: disposes owed
/// go before the request that follows them, so a client at its limit
/// that read three replies may put three requests (and not a fourth),
/// and the service does not count the replies it read as in flight.
#[test]
fn owed_disposes_do_not_count_against_the_limit() {
    let _serial = setup();
    let sid = open("limit", true);
    let c = open("limit", false);
    for _ in 0..129 {
        put(c, b"q").unwrap();
    }
    assert_eq!(put(c, b"q"), Err(libc::ENOBUFS));
    let reqs: Vec<i64> = (0..129).map(|_| next(sid, CAPMS_REQUEST)).collect();
    for &r in &reqs[..3] {
        reply(sid, b"r", r);
    }
    for _ in 0..3 {
        assert_eq!(recv(c, true).map(|(_, st)| st), Ok(CAPMS_REPLY));
    }
    for _ in 0..3 {
        put(c, b"q").unwrap();
    }
    assert_eq!(put(c, b"q"), Err(libc::ENOBUFS));
    let mut disposes = Vec::new();
    let mut more = Vec::new();
    while more.len() < 3 {
        match recv(sid, true).unwrap() {
            (id, CAPMS_DISPOSE) => disposes.push(id),
            (id, CAPMS_REQUEST) => more.push(id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(disposes, reqs[..3]);
    // Still connected: everything is answered.
    for &r in reqs[3..].iter().chain(&more) {
        reply(sid, b"r", r);
    }
    for _ in 0..129 {
        assert_eq!(recv(c, true).map(|(_, st)| st), Ok(CAPMS_REPLY));
    }
    let n = (0..129)
        .filter(|_| recv(sid, true).map(|(_, st)| st) == Ok(CAPMS_DISPOSE))
        .count();
    assert_eq!(n, 129);
    close(c);
    close(sid);
}

/// A dispose owed by one thread must not hold up another thread of the
/// process that is already asleep in `caps_sys_wait` (on another
/// connection): that thread waits for a service, which may need the
/// notice first ("So a client never waits for its service while it owes
/// it a dispose"). A raw service with two connections answers the first
/// only once it got the dispose of the second's first reply; the thread
/// that read that reply then waits outside the library for the first.
#[test]
fn a_dispose_owed_does_not_hold_up_a_thread_asleep_on_another_connection() {
    let _serial = setup();
    let real = open("xthr_dir", true);
    let (uid, gid) = me();
    let l = UnixListener::bind(sys_dir().join(format!("xthr,{uid},{gid}"))).unwrap();
    close(real);
    let server = std::thread::spawn(move || {
        let mut conns: Vec<UnixStream> = (0..2)
            .map(|_| {
                let (mut s, _) = l.accept().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut h = [0u8; 16];
                s.read_exact(&mut h).unwrap();
                s.write_all(&[hello(2, DISPOSES), frame(GEN, 0, 0, &[])].concat())
                    .unwrap();
                s
            })
            .collect();
        // The second connection's two requests, then the first's.
        for _ in 0..2 {
            assert_eq!(read_frame(&mut conns[1]).kind, REQUEST);
        }
        assert_eq!(read_frame(&mut conns[0]).kind, REQUEST);
        conns[1].write_all(&frame(REPLY, 1, 0, b"r")).unwrap();
        // Its dispose (a frame, or a list), then the first's reply.
        let mut h = [0u8; 48];
        let got = conns[1].read_exact(&mut h).is_ok();
        if got {
            conns[0].write_all(&frame(REPLY, 1, 0, b"r")).unwrap();
        }
        // (Dropping the connections ends the waiter's wait either way.)
        drop(conns);
        (got, u16::from_le_bytes([h[0], h[1]]))
    });
    let c1 = open("xthr", false);
    let c2 = open("xthr", false);
    assert_eq!(put(c2, b"q"), Ok(1));
    assert_eq!(put(c2, b"q"), Ok(2));
    let waiter = std::thread::spawn(move || {
        assert_eq!(put(c1, b"q"), Ok(1));
        recv(c1, true)
    });
    // The waiter asleep first (in its wait on c1).
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(recv(c2, true), Ok((1, CAPMS_REPLY)));
    // Out of the library until the waiter has its reply.
    let waited = waiter.join().unwrap();
    let (got, kind) = server.join().unwrap();
    assert!(got, "the dispose of reply 1 never reached the service");
    assert!(kind == DISPOSE || kind == LIST, "kind {kind}");
    assert_eq!(waited, Ok((1, CAPMS_REPLY)));
    close(c1);
    close(c2);
}
