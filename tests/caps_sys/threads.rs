//! Threads waiting on services, polling services, ports shared by
//! threads.

use super::*;

/// CPU time this thread used.
fn thread_cpu() -> Duration {
    // SAFETY: plain data.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn waitsvc_sleeps_until_the_service_appears() {
    setup();
    let (uid, gid) = me();
    let t = std::thread::spawn(move || {
        let c0 = thread_cpu();
        let t0 = Instant::now();
        let c = client("late", uid, gid, CAPF_ANYCLIENT | CAPF_WAITSVC);
        (c, t0.elapsed(), thread_cpu() - c0)
    });
    std::thread::sleep(Duration::from_millis(400));
    assert!(!t.is_finished());
    let s = Svc::start("late", CAPF_ANYCLIENT, Some(b"here"));
    let (c, waited, cpu) = t.join().unwrap();
    let c = c.unwrap();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    // Asleep, not spinning.
    assert!(
        cpu < Duration::from_millis(100),
        "{cpu:?} of CPU while waiting"
    );
    put(c, b"?").unwrap();
    assert_eq!(wait(c).data, b"here");
    close(c).unwrap();
    drop(s);
}

#[test]
fn two_threads_waiting_on_one_service_each_get_a_message() {
    setup();
    let (uid, gid) = me();
    let id = service("two", uid, gid, CAPF_ANYCLIENT).unwrap();
    let (tx, rx) = channel();
    for _ in 0..2 {
        let tx = tx.clone();
        std::thread::spawn(move || tx.send(recv(id, 64, true)).unwrap());
    }
    std::thread::sleep(Duration::from_millis(100));
    // Whichever thread reads the socket queues both requests; the other
    // must be woken to take the second.
    let c = client("two", uid, gid, CAPF_ANYCLIENT).unwrap();
    put(c, b"a").unwrap();
    put(c, b"b").unwrap();
    let mut got: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            let m = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("a waiting thread was not woken")
                .unwrap();
            assert_eq!(m.state, CAPMS_REQUEST);
            m.data
        })
        .collect();
    got.sort();
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
    close(c).unwrap();
    close(id).unwrap();
}

/// A service that never sleeps in `caps_sys_wait` (it only polls with
/// `caps_sys_get`) still takes new clients and answers them: it accepts
/// at least every few reads, not only when a poll saw its listener.
#[test]
fn a_service_that_only_polls_with_get_takes_new_clients() {
    setup();
    let (uid, gid) = me();
    let child = forked(|ready| {
        let Ok(id) = service("getonly", uid, gid, CAPF_ANYCLIENT) else {
            return 10;
        };
        // The parent connects once the service exists. Say so with a
        // file: `ready` would block this, the only thread, which must
        // keep polling to serve.
        let _ = std::fs::write(getonly_flag(), b"up");
        let t0 = Instant::now();
        let mut answered = 0;
        while answered < 3 && t0.elapsed() < Duration::from_secs(60) {
            match recv(id, 64, false) {
                Ok(m) if m.state == CAPMS_REQUEST => {
                    if reply(id, b"polled", m.id).is_err() {
                        return 11;
                    }
                    answered += 1;
                }
                Ok(_) | Err(libc::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => return 12,
            }
        }
        if answered < 3 {
            return 13;
        }
        ready();
        0
    });
    let t0 = Instant::now();
    while !getonly_flag().exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "service never came up"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    for i in 0..3 {
        let t0 = Instant::now();
        let c = client("getonly", uid, gid, CAPF_ANYCLIENT).expect("connect to a get-only service");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "client {i} waited {:?}",
            t0.elapsed()
        );
        put(c, b"hi").unwrap();
        let m = recv(c, 64, true).unwrap();
        assert_eq!((m.state, &m.data[..]), (CAPMS_REPLY, &b"polled"[..]));
        close(c).unwrap();
    }
    assert!(child.ready());
    assert_eq!(child.finish(), Ok(0));
}

/// Where the get-only service's child says it is up.
fn getonly_flag() -> PathBuf {
    PathBuf::from(std::env::var_os("LIBCAPS_DIR").unwrap()).join("getonly.up")
}

/// One client port id used by four kernel threads at once, 1000 round
/// trips each, against an echoing service: every call succeeds and every
/// reply is one of the requests (the table's mutex serialises the calls on
/// a port; nothing on the wire is corrupted).
#[test]
fn one_client_port_used_by_four_threads_at_once() {
    setup();
    let (uid, gid) = me();
    let sid = service("par", uid, gid, CAPF_ANYCLIENT).unwrap();
    // It ends after the workers' 4,000 requests, before `sid` is closed
    // (a thread that waits on an id closed meanwhile may wait on the
    // next entry given that id: see `Svc`).
    let echo = std::thread::spawn(move || {
        let mut answered = 0;
        while answered < 4 * 1000 {
            let m = recv(sid, 64, true).unwrap();
            if m.state == CAPMS_REQUEST {
                reply(sid, &m.data, m.id).unwrap();
                answered += 1;
            }
        }
    });
    let c = client("par", uid, gid, CAPF_ANYCLIENT).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..1000 {
                    put(c, format!("w{w} call {i}").as_bytes()).unwrap();
                    let m = recv(c, 64, true).unwrap();
                    assert_eq!(m.state, CAPMS_REPLY);
                    got.push(String::from_utf8(m.data).unwrap());
                }
                got
            })
        })
        .collect();
    let mut got: Vec<String> = workers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let mut want: Vec<String> = (0..4)
        .flat_map(|w| (0..1000).map(move |i| format!("w{w} call {i}")))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    echo.join().unwrap();
    close(c).unwrap();
    close(sid).unwrap();
}
