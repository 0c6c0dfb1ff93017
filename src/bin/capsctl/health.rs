//! `capsctl ping` and `capsctl stat`: their command lines, the service
//! they address, the frames the service's library answers itself (a
//! no-op and a statistics request, `probe::Session`) and their output.
//!
//! Exit status: 0 every round trip came back / the counters were shown;
//! 1 the service is dead, refused us or did not answer in time; 2 usage
//! errors and no such service.

use std::num::IntErrorKind;
use std::path::Path;
use std::time::Duration;

use caps::caps::probe::{self, AskError, Face, Node, Session};
use caps::caps::rendezvous;
use caps::caps::wire::{Counters, STAT_NAMES};

use crate::out::Obj;

/// How long the hello and each answer may take.
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// The pause between two round trips of `ping`.
const INTERVAL: Duration = Duration::from_millis(100);

/// What to say about `e`, a failure to ask the service at `node`.
fn explain(node: &Node, e: &AskError) -> String {
    match (e, node.face) {
        (AskError::TimedOut, Face::V2) => format!(
            "no answer within {} s: a v2 (caps_sys_*) service answers ping and stat only \
             while its program is inside a caps_sys_* call, so it answers when it next \
             enters the library",
            ANSWER_WAIT.as_secs()
        ),
        (AskError::TimedOut, Face::V1) => format!(
            "no answer within {} s: the service's cpu is not running its event loop",
            ANSWER_WAIT.as_secs()
        ),
        _ => e.to_string(),
    }
}

fn number(opt: &str, v: Option<&&str>) -> Result<u32, String> {
    let v = v.ok_or_else(|| format!("{opt} needs a value"))?;
    v.parse()
        .map_err(|e: std::num::ParseIntError| match e.kind() {
            IntErrorKind::PosOverflow => format!("{opt}: {v} is too large (at most {})", u32::MAX),
            _ => format!("{opt}: '{v}' is not a valid number"),
        })
}

/// `name` as a service name, or why it cannot be one.
fn service_name(name: Option<&str>) -> Result<String, String> {
    let name = name.ok_or("no service NAME given")?;
    rendezvous::check_name(name.as_bytes()).map_err(|_| {
        format!("'{name}' is not a service name (one that is not empty, '.' or '..', without '/')")
    })?;
    Ok(name.to_string())
}

#[derive(Debug, PartialEq, Eq)]
pub struct PingArgs {
    pub name: String,
    pub uid: Option<u32>,
    pub count: u32,
}

impl PingArgs {
    /// `NAME [-u UID] [-c COUNT]`, options before or after the name.
    pub fn parse(args: &[&str]) -> Result<PingArgs, String> {
        let (mut name, mut uid, mut count) = (None, None, 5);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match *a {
                "-u" => uid = Some(number("-u", it.next())?),
                "-c" => {
                    count = number("-c", it.next())?;
                    if count == 0 {
                        return Err("-c: the count must be at least 1".into());
                    }
                }
                o if o.starts_with('-') => return Err(format!("unknown option {o}")),
                _ if name.is_none() => name = Some(*a),
                n => return Err(format!("unexpected {n}")),
            }
        }
        Ok(PingArgs {
            name: service_name(name)?,
            uid,
            count,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct StatArgs {
    pub name: String,
    pub uid: Option<u32>,
    pub json: bool,
}

impl StatArgs {
    /// `NAME [-u UID] [--json]`.
    pub fn parse(args: &[&str]) -> Result<StatArgs, String> {
        let (mut name, mut uid, mut json) = (None, None, false);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match *a {
                "-u" => uid = Some(number("-u", it.next())?),
                "--json" => json = true,
                o if o.starts_with('-') => return Err(format!("unknown option {o}")),
                _ if name.is_none() => name = Some(*a),
                n => return Err(format!("unexpected {n}")),
            }
        }
        Ok(StatArgs {
            name: service_name(name)?,
            uid,
            json,
        })
    }
}

/// The node a command addresses: service `name` (v1 or v2) of `uid`
/// (default: any), the caller's own v1 service first, then the newest.
fn resolve(base: &Path, name: &str, uid: Option<u32>) -> Option<Node> {
    let me = caps::caps::cred::Cred::of_self().uid;
    let mut found: Vec<Node> = probe::scan(base)
        .into_iter()
        .filter(|n| n.temp_pid.is_none() && n.name == name.as_bytes())
        .filter(|n| {
            uid.is_none_or(|u| match n.face {
                Face::V1 => n.dir_uid == Some(u),
                Face::V2 => n.keys.is_some_and(|(k, _)| k == Some(u)) || n.uid == u,
            })
        })
        .collect();
    found.sort_by_key(|n| (n.face != Face::V1 || n.dir_uid != Some(me), -n.mtime));
    found.into_iter().next()
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// The line `ping` prints for round trip `seq`.
fn ping_line(name: &str, seq: u32, rtt: Duration) -> String {
    format!("reply from {name}: seq={seq} time={} ms", ms(rtt))
}

/// The summary `ping` ends with, as ping(8) does.
fn ping_summary(name: &str, sent: u32, rtts: &[Duration]) -> String {
    let lost = sent - rtts.len() as u32;
    let mut s = format!(
        "--- {name} ping statistics ---\n{sent} round trips, {} came back, {}% lost",
        rtts.len(),
        lost * 100 / sent.max(1)
    );
    if let (Some(min), Some(max)) = (rtts.iter().min(), rtts.iter().max()) {
        let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
        s += &format!(
            "\nrtt min/avg/max = {}/{}/{} ms",
            ms(*min),
            ms(avg),
            ms(*max)
        );
    }
    s
}

pub fn ping(a: &PingArgs) -> i32 {
    let base = rendezvous::base_dir();
    let Some(node) = resolve(&base, &a.name, a.uid) else {
        eprintln!(
            "capsctl: ping: no service {} under {}",
            a.name,
            base.display()
        );
        return 2;
    };
    // No connection, no round trip: the reason, and no statistics.
    let mut session = match Session::open(&node, ANSWER_WAIT) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "capsctl: ping: {}: {}",
                node.path().display(),
                explain(&node, &e)
            );
            return 1;
        }
    };
    let (mut sent, mut rtts) = (0, Vec::new());
    for seq in 1..=a.count {
        if seq > 1 {
            std::thread::sleep(INTERVAL);
        }
        sent = seq;
        match session.ping(ANSWER_WAIT) {
            Ok(d) => {
                outln!("{}", ping_line(&a.name, seq, d));
                rtts.push(d);
            }
            Err(e) => {
                eprintln!(
                    "capsctl: ping: {}: seq={seq}: {}",
                    node.path().display(),
                    explain(&node, &e)
                );
                // A late answer is passed over by the next round trip; a
                // connection that ended is over.
                if !matches!(e, AskError::TimedOut) {
                    break;
                }
            }
        }
    }
    outln!("{}", ping_summary(&a.name, sent, &rtts));
    if rtts.len() as u32 == a.count { 0 } else { 1 }
}

/// `stat`'s table: one line per counter, the uptime in seconds.
fn stats_text(c: &Counters) -> String {
    let rows: Vec<Vec<String>> = STAT_NAMES
        .iter()
        .zip(c.values)
        .map(|(k, v)| match *k {
            "uptime_ms" => vec!["uptime".into(), format!("{:.1} s", v as f64 / 1e3)],
            k => vec![k.replace('_', " "), v.to_string()],
        })
        .collect();
    crate::out::table(&rows)
}

/// `stat --json`: the service and its counters by their wire names.
fn stats_json(c: &Counters, node: &Node) -> String {
    let mut o = Obj::default()
        .str("name", &node.name)
        .str("path", node.path().as_os_str().as_encoded_bytes());
    for (k, v) in STAT_NAMES.iter().zip(c.values) {
        o = o.num(k, v);
    }
    o.build()
}

pub fn stat(a: &StatArgs) -> i32 {
    let base = rendezvous::base_dir();
    let Some(node) = resolve(&base, &a.name, a.uid) else {
        eprintln!(
            "capsctl: stat: no service {} under {}",
            a.name,
            base.display()
        );
        return 2;
    };
    let path = node.path();
    let mut session = match Session::open(&node, ANSWER_WAIT) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("capsctl: stat: {}: {}", path.display(), explain(&node, &e));
            return 1;
        }
    };
    match session.stat(ANSWER_WAIT) {
        Ok(c) if a.json => outln!("{}", stats_json(&c, &node)),
        Ok(c) => out!("{}", stats_text(&c)),
        Err(AskError::Refused(e)) => {
            eprintln!(
                "capsctl: stat: {}: refused: {}: a service's statistics are shown only to \
                 its own user (uid {}) and to root",
                path.display(),
                probe::strerror(e),
                session.server.uid
            );
            return 1;
        }
        Err(e) => {
            eprintln!("capsctl: stat: {}: {}", path.display(), explain(&node, &e));
            return 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_and_stat_command_lines() {
        assert_eq!(
            PingArgs::parse(&["svc", "-c", "3", "-u", "1000"]),
            Ok(PingArgs {
                name: "svc".into(),
                uid: Some(1000),
                count: 3
            })
        );
        assert!(PingArgs::parse(&["svc", "-c", "0"]).is_err());
        assert!(PingArgs::parse(&["svc", "-c"]).is_err());
        assert!(PingArgs::parse(&["-c", "2"]).is_err());
        assert!(PingArgs::parse(&["a", "b"]).is_err());
        assert_eq!(
            PingArgs::parse(&["svc", "-c", "4294967296"]),
            Err("-c: 4294967296 is too large (at most 4294967295)".into())
        );
        assert_eq!(
            PingArgs::parse(&["svc", "-u", "x1"]),
            Err("-u: 'x1' is not a valid number".into())
        );
        for bad in ["a/b", ".", ".."] {
            assert_eq!(
                PingArgs::parse(&[bad]),
                Err(format!(
                    "'{bad}' is not a service name (one that is not empty, '.' or '..', without '/')"
                ))
            );
            assert!(StatArgs::parse(&[bad]).is_err());
        }
        assert_eq!(
            StatArgs::parse(&["--json", "svc"]),
            Ok(StatArgs {
                name: "svc".into(),
                uid: None,
                json: true
            })
        );
        assert!(StatArgs::parse(&["svc", "-x"]).is_err());
    }

    #[test]
    fn ping_output_reads_like_ping8() {
        let us = |n| Duration::from_micros(n);
        assert_eq!(
            ping_line("svc", 2, us(52)),
            "reply from svc: seq=2 time=0.052 ms"
        );
        assert_eq!(
            ping_summary("svc", 4, &[us(40), us(60), us(50)]),
            "--- svc ping statistics ---\n4 round trips, 3 came back, 25% lost\n\
             rtt min/avg/max = 0.040/0.050/0.060 ms"
        );
    }
}
