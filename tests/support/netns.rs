//! Stand-ins for other hosts: a network namespace joined to this one by a
//! veth pair, optionally with `tc netem` delay on both ends. Needs root
//! (CI runs as root); fails loudly otherwise. Removed on drop.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

pub struct Link {
    /// The namespace's name (for `ip netns exec`).
    pub namespace: String,
    /// This side's address.
    pub outside: Ipv4Addr,
    /// The namespace side's address: where its servers listen.
    pub inside: Ipv4Addr,
    /// The delay asked for is on the link (netem on both ends). False when
    /// the kernel has no netem: callers then add it with `DelayRelay`.
    pub netem: bool,
    host_if: String,
}

fn ip(args: &[&str]) {
    run("ip", args);
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{cmd}` (install iproute2; run as root): {e}"));
    assert!(
        out.status.success(),
        "`{cmd} {}` failed ({}): {} — network namespaces need root",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Link {
    /// Namespace `fgw-<pid>-<name>` at 10.231.<index>.2, this side
    /// 10.231.<index>.1, with `delay` of round trip added by netem (half on
    /// each end).
    pub fn create(name: &str, index: u8, delay: Option<Duration>) -> Link {
        let pid = std::process::id();
        let namespace = format!("fgw-{pid}-{name}");
        let host_if = format!("fg{}{index}h", pid % 1_000_000);
        let ns_if = format!("fg{}{index}n", pid % 1_000_000);
        let outside = Ipv4Addr::new(10, 231, index, 1);
        let inside = Ipv4Addr::new(10, 231, index, 2);
        // Left over from a run with the same PID: start clean.
        let _ = Command::new("ip")
            .args(["netns", "del", &namespace])
            .output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &namespace]);
        // From here on, a failure still removes what was made.
        let mut link = Link {
            namespace: namespace.clone(),
            outside,
            inside,
            netem: false,
            host_if: host_if.clone(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &namespace]);
        ip(&["addr", "add", &format!("{outside}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &namespace, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        in_ns(&["addr", "add", &format!("{inside}/30"), "dev", &ns_if]);
        in_ns(&["link", "set", &ns_if, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        if let Some(delay) = delay {
            let micros = format!("{}us", (delay / 2).as_micros());
            let probe = Command::new("tc")
                .args([
                    "qdisc", "add", "dev", &host_if, "root", "netem", "delay", &micros,
                ])
                .output()
                .unwrap_or_else(|e| panic!("cannot run `tc` (install iproute2): {e}"));
            let stderr = String::from_utf8_lossy(&probe.stderr);
            if probe.status.success() {
                run(
                    "ip",
                    &[
                        "netns", "exec", &namespace, "tc", "qdisc", "add", "dev", &ns_if, "root",
                        "netem", "delay", &micros,
                    ],
                );
                link.netem = true;
            } else if stderr.contains("qdisc kind is unknown") {
                eprintln!("this kernel has no sch_netem: the {delay:?} delay comes from a relay in the test instead");
            } else {
                panic!(
                    "`tc qdisc add dev {host_if} root netem delay {micros}` failed: {}",
                    stderr.trim()
                );
            }
        }
        link
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the pair, and so the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
