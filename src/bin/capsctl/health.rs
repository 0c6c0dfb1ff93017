//! `capsctl ping` and `capsctl stat`: their command lines, the service
//! they address and their output. Both need frames the library answers
//! itself (a no-op and a statistics request), which this version's
//! connection layer does not have yet: `round_trip` and `fetch_stats`
//! say so, and the commands end with exit status 2.

use std::path::Path;
use std::time::Duration;

use caps::caps::probe::{self, Face, Node};
use caps::caps::rendezvous;

use crate::out::Obj;

/// Why a command cannot be carried out by this version.
const NOT_YET: &str = "the library's connection layer has no ping or stat frame yet";

fn number<T: std::str::FromStr>(opt: &str, v: Option<&&str>) -> Result<T, String> {
    let v = v.ok_or_else(|| format!("{opt} needs a value"))?;
    v.parse()
        .map_err(|_| format!("{opt}: '{v}' is not a valid number"))
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
                n if name.is_none() => name = Some(n.to_string()),
                n => return Err(format!("unexpected {n}")),
            }
        }
        Ok(PingArgs {
            name: name.ok_or("no service NAME given")?,
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
                n if name.is_none() => name = Some(n.to_string()),
                n => return Err(format!("unexpected {n}")),
            }
        }
        Ok(StatArgs {
            name: name.ok_or("no service NAME given")?,
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

/// One no-op round trip over a connection to `node`.
fn round_trip(_node: &Node, _seq: u32) -> Result<Duration, String> {
    Err(NOT_YET.into())
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
    let mut rtts = Vec::new();
    for seq in 1..=a.count {
        match round_trip(&node, seq) {
            Ok(d) => {
                println!("{}", ping_line(&a.name, seq, d));
                rtts.push(d);
            }
            Err(e) => {
                eprintln!("capsctl: ping: {}: {e}", node.path().display());
                return 2;
            }
        }
    }
    println!("{}", ping_summary(&a.name, a.count, &rtts));
    if rtts.len() as u32 == a.count { 0 } else { 1 }
}

/// The counters a service's connection layer keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub connections_now: u64,
    pub connections_total: u64,
    pub requests: u64,
    pub replies: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub protocol_errors: u64,
    pub dropped_hello_deadline: u64,
    pub dropped_uid_limit: u64,
    pub dropped_memory_budget: u64,
    pub dropped_bad_frame: u64,
    pub deepest_queue: u64,
    pub uptime_s: u64,
}

impl Stats {
    fn fields(&self) -> [(&'static str, u64); 13] {
        [
            ("connections_now", self.connections_now),
            ("connections_total", self.connections_total),
            ("requests", self.requests),
            ("replies", self.replies),
            ("bytes_in", self.bytes_in),
            ("bytes_out", self.bytes_out),
            ("protocol_errors", self.protocol_errors),
            ("dropped_hello_deadline", self.dropped_hello_deadline),
            ("dropped_uid_limit", self.dropped_uid_limit),
            ("dropped_memory_budget", self.dropped_memory_budget),
            ("dropped_bad_frame", self.dropped_bad_frame),
            ("deepest_queue", self.deepest_queue),
            ("uptime_s", self.uptime_s),
        ]
    }

    fn text(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .fields()
            .iter()
            .map(|(k, v)| vec![k.replace('_', " "), v.to_string()])
            .collect();
        crate::out::table(&rows)
    }

    fn json(&self, node: &Node) -> String {
        let mut o = Obj::default()
            .str("name", &node.name)
            .str("path", node.path().as_os_str().as_encoded_bytes());
        for (k, v) in self.fields() {
            o = o.num(k, v);
        }
        o.build()
    }
}

/// The counters of the service at `node`.
fn fetch_stats(_node: &Node) -> Result<Stats, String> {
    Err(NOT_YET.into())
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
    match fetch_stats(&node) {
        Ok(s) if a.json => println!("{}", s.json(&node)),
        Ok(s) => print!("{}", s.text()),
        Err(e) => {
            eprintln!("capsctl: stat: {}: {e}", node.path().display());
            return 2;
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
