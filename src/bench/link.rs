//! `--link-delay`: a php-fpm in a network namespace of its own, reached over
//! an emulated link that adds a fixed round-trip delay.
//!
//! The usual tool, `tc qdisc add … netem delay` on a veth pair, needs the
//! kernel's `sch_netem`, which not every kernel has (this project's machines
//! run one built without it, and without modules). So the link here is two
//! tun devices, one in our network namespace and one moved into the new one,
//! and a relay thread that reads each IP packet from one side, holds it for
//! half the delay and writes it to the other. Every packet in both
//! directions (requests, responses, ACKs, SYNs) waits delay/2, so each round
//! trip takes `delay` longer, as over a real link with that RTT: a kept-alive
//! FastCGI request pays it once, one on a new connection twice (handshake,
//! then request and response).
//!
//! The relay costs a read, a write and usually a thread wake-up per packet;
//! a 0 ms link measures that alone. How long each packet really stayed in
//! the relay is recorded and reported next to the table.
//!
//! Names carry our PID: namespace `fcgi-bench-<pid>-<n>`, devices
//! `fgb<pid>h<n>` (ours) and `fgb<pid>n<n>` (in the namespace). Link `n`
//! gets the /30 `10.203.a.b/30`: `.1` on our side, `.2` in the namespace.
//! The devices disappear with their file descriptors, so with the process;
//! the namespace is deleted when the link is dropped (a bench killed with
//! SIGKILL leaves it behind: `ip netns del fcgi-bench-<pid>-<n>`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::args::MAX_LINKS;
use super::stats::{Latencies, LatencySummary};

/// Subnets are handed out in blocks of `MAX_LINKS` /30s inside 10.203.0.0/16.
const BLOCKS: u32 = (1 << 14) / MAX_LINKS as u32;
/// Packets held per direction before the relay drops (netem's default limit is 1000).
const QUEUE_LIMIT: usize = 10_000;
/// The relay looks at its stop flag at least this often.
const STOP_POLL: Duration = Duration::from_millis(50);
/// Larger than any packet a tun device with the default MTU hands over.
const PACKET_BUFFER: usize = 65_536;

/// Everything `--link-delay` needs, checked before anything is created.
pub fn prerequisites() -> Result<PathBuf, String> {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "--link-delay needs root: it creates network namespaces and tun devices \
                    (run as root, or leave out --link-delay)"
                .to_owned(),
        );
    }
    let ip = find_ip().ok_or_else(|| {
        "--link-delay needs the `ip` command: apt-get install iproute2".to_owned()
    })?;
    if !Path::new("/dev/net/tun").exists() {
        return Err(
            "--link-delay needs /dev/net/tun (the tun driver) for its emulated links".to_owned(),
        );
    }
    Ok(ip)
}

fn find_ip() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join("ip")).find(|p| p.is_file())
}

/// Runs `ip ARGS`; the error names the command and quotes its stderr.
fn run_ip(ip: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(ip)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ip.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Our side and the namespace's side of /30 number `subnet` (0..16384) in 10.203.0.0/16.
pub fn subnet_addrs(subnet: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = (10u32 << 24) | (203 << 16) | ((subnet % (1 << 14)) << 2);
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// The first block of `MAX_LINKS` subnets, starting at block `start` and
/// wrapping, none of whose addresses is in `used`.
pub fn pick_block(start: u32, used: &[Ipv4Addr]) -> Option<u32> {
    (0..BLOCKS).map(|i| (start + i) % BLOCKS).find(|&block| {
        (0..MAX_LINKS as u32).all(|n| {
            let (ours, theirs) = subnet_addrs(block * MAX_LINKS as u32 + n);
            !used.contains(&ours) && !used.contains(&theirs)
        })
    })
}

/// The IPv4 addresses in `ip -4 -o addr show` output.
pub fn parse_inet_addrs(text: &str) -> Vec<Ipv4Addr> {
    let mut addrs = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word == "inet" {
                if let Some(addr) = words
                    .next()
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse().ok())
                {
                    addrs.push(addr);
                }
            }
        }
    }
    addrs
}

/// The block of subnets this run's links use: chosen from our PID, so two
/// runs at once do not collide, and skipping addresses already on this host.
pub fn choose_block(ip: &Path) -> Result<u32, String> {
    let used = parse_inet_addrs(&run_ip(ip, &["-4", "-o", "addr", "show"])?);
    pick_block(std::process::id() % BLOCKS, &used)
        .ok_or_else(|| "no free /30 subnet left in 10.203.0.0/16 for --link-delay".to_owned())
}

/// `0.2ms`, `1ms`, `0ms`: the delay as the table and the JSON name it.
pub fn delay_label(delay: Duration) -> String {
    let ms = format!("{:.3}", delay.as_secs_f64() * 1000.0);
    let ms = ms.trim_end_matches('0').trim_end_matches('.');
    format!("{ms}ms")
}

/// One link and its namespace; torn down when dropped.
#[derive(Debug)]
pub struct Link {
    pub delay: Duration,
    pub namespace: String,
    /// Our side of the link.
    pub host_addr: Ipv4Addr,
    /// The namespace's side: php-fpm listens here.
    pub ns_addr: Ipv4Addr,
    ip: PathBuf,
    namespace_created: bool,
    relay: Option<Relay>,
}

impl Link {
    /// Creates namespace, devices, addresses and the relay for link `index`
    /// (0-based) in subnet `subnet`; whatever was made is removed on failure.
    pub fn create(ip: &Path, index: usize, subnet: u32, delay: Duration) -> Result<Link, String> {
        let pid = std::process::id();
        let (host_addr, ns_addr) = subnet_addrs(subnet);
        let mut link = Link {
            delay,
            namespace: format!("fcgi-bench-{pid}-{index}"),
            host_addr,
            ns_addr,
            ip: ip.to_owned(),
            namespace_created: false,
            relay: None,
        };
        let ns = link.namespace.clone();
        run_ip(ip, &["netns", "add", &ns]).map_err(|e| {
            format!("{e} (a namespace left by a killed bench? `ip netns del {ns}`)")
        })?;
        link.namespace_created = true;
        let host_dev = format!("fgb{pid}h{index}");
        let ns_dev = format!("fgb{pid}n{index}");
        // Both are made here and one is moved: a device whose file
        // descriptor closes disappears, wherever it is.
        let host_tun = open_tun(&host_dev).map_err(|e| format!("tun device {host_dev}: {e}"))?;
        let ns_tun = open_tun(&ns_dev).map_err(|e| format!("tun device {ns_dev}: {e}"))?;
        run_ip(ip, &["link", "set", &ns_dev, "netns", &ns])?;
        let host_cidr = format!("{host_addr}/30");
        let ns_cidr = format!("{ns_addr}/30");
        run_ip(ip, &["addr", "add", &host_cidr, "dev", &host_dev])?;
        run_ip(ip, &["link", "set", &host_dev, "up"])?;
        run_ip(ip, &["-n", &ns, "addr", "add", &ns_cidr, "dev", &ns_dev])?;
        run_ip(ip, &["-n", &ns, "link", "set", &ns_dev, "up"])?;
        run_ip(ip, &["-n", &ns, "link", "set", "lo", "up"])?;
        link.relay = Some(
            Relay::start(host_tun, ns_tun, delay / 2, &ns)
                .map_err(|e| format!("cannot start the relay thread of {ns}: {e}"))?,
        );
        Ok(link)
    }

    /// The namespace, to enter with setns(2) before starting php-fpm in it.
    pub fn namespace_file(&self) -> io::Result<File> {
        File::open(Path::new("/run/netns").join(&self.namespace))
    }

    /// Stops the relay (the link goes down) and returns what it measured;
    /// `None` once stopped.
    pub fn stop_relay(&mut self) -> Option<RelayStats> {
        self.relay.take().map(Relay::stop)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop_relay();
        if self.namespace_created {
            if let Err(e) = run_ip(&self.ip, &["netns", "del", &self.namespace]) {
                eprintln!("fcgi-gateway bench: could not remove namespace: {e}");
            }
        }
    }
}

/// A tun device (IP packets, no header) named `name`, non-blocking.
fn open_tun(name: &str) -> io::Result<File> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "device name too long",
        ));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is plain data (arrays, integers, pointers); all zeros is
    // a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is,
    // and lives across the call; the name is NUL-terminated (zeroed, shorter
    // than IFNAMSIZ).
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// What the relay did over the whole run (warm-up included).
#[derive(Debug, Clone, Default)]
pub struct RelayStats {
    pub packets: u64,
    pub bytes: u64,
    /// Dropped because a direction already held `QUEUE_LIMIT` packets.
    pub dropped: u64,
    pub write_errors: u64,
    /// From reading each packet to writing it: the one-way delay it got.
    pub held: Latencies,
}

/// The link as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    /// The upstream's label in the table, e.g. `tcp+1ms`.
    pub label: String,
    pub upstream: String,
    pub namespace: String,
    /// Round-trip delay added: each direction holds packets `one_way_ms`.
    pub rtt_ms: f64,
    pub one_way_ms: f64,
    pub emulation: &'static str,
    pub packets: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub write_errors: u64,
    /// How long packets really stayed in the relay (one way).
    pub held_ms: LatencySummary,
}

/// Describes the emulation in the JSON.
pub const EMULATION: &str = "userspace relay between two tun devices, delay/2 each way";

impl LinkReport {
    pub fn new(label: String, upstream: String, link: &Link, stats: &RelayStats) -> LinkReport {
        LinkReport {
            label,
            upstream,
            namespace: link.namespace.clone(),
            rtt_ms: link.delay.as_secs_f64() * 1000.0,
            one_way_ms: (link.delay / 2).as_secs_f64() * 1000.0,
            emulation: EMULATION,
            packets: stats.packets,
            bytes: stats.bytes,
            dropped: stats.dropped,
            write_errors: stats.write_errors,
            held_ms: stats.held.summary(),
        }
    }
}

#[derive(Debug)]
struct Relay {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<RelayStats>,
}

impl Relay {
    fn start(a: File, b: File, hold: Duration, name: &str) -> io::Result<Relay> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("relay {name}"))
            .spawn(move || relay(&a, &b, hold, &flag))?;
        Ok(Relay { stop, thread })
    }

    fn stop(self) -> RelayStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// How much earlier than a packet's due time the relay wakes and sends it.
///
/// A thread asleep until a given time wakes some tens of µs after it (more
/// on a busy machine), which would add that much to every hold: a 0.2 ms
/// link would be a 0.28 ms one. So the relay aims early by what it learns:
/// each packet sent late moves the aim a step earlier, each one sent early a
/// step later, which settles where half are late and half early, i.e. where
/// the median hold is the one asked for. Steps, not averages: a packet held
/// up for milliseconds by a preempted thread moves it no more than any other.
/// Never earlier than the packet arrived, never later than due.
#[derive(Debug, Clone, Copy)]
struct WakeAdvance {
    advance: Duration,
    limit: Duration,
}

/// How far one packet moves the aim; 200 packets move it 0.2 ms.
const ADVANCE_STEP: Duration = Duration::from_micros(1);

impl WakeAdvance {
    fn new(hold: Duration) -> WakeAdvance {
        WakeAdvance {
            advance: Duration::ZERO,
            limit: hold,
        }
    }

    /// A packet due at `due` was written at `written`.
    fn learn(&mut self, written: Instant, due: Instant) {
        self.advance = if written > due {
            (self.advance + ADVANCE_STEP).min(self.limit)
        } else if written < due {
            self.advance.saturating_sub(ADVANCE_STEP)
        } else {
            self.advance
        };
    }
}

struct Held {
    read_at: Instant,
    due: Instant,
    packet: Vec<u8>,
}

/// Moves packets a → b and b → a, each `hold` after it was read, until `stop`.
fn relay(a: &File, b: &File, hold: Duration, stop: &AtomicBool) -> RelayStats {
    // The default 50 µs of timer slack would be a quarter of a 0.2 ms link.
    // SAFETY: PR_SET_TIMERSLACK takes an integer and changes only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut stats = RelayStats::default();
    // queues[0]: read from a, to b; queues[1]: read from b, to a.
    let mut queues: [VecDeque<Held>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut buf = vec![0u8; PACKET_BUFFER];
    let mut early = WakeAdvance::new(hold);
    let ends = [a, b];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (dir, queue) in queues.iter_mut().enumerate() {
            let mut out = ends[1 - dir];
            while queue.front().is_some_and(|h| h.due <= now + early.advance) {
                let Some(held) = queue.pop_front() else { break };
                // A tun device takes a packet whole or not at all.
                match out.write(&held.packet) {
                    Ok(n) if n == held.packet.len() => {
                        let written = Instant::now();
                        stats.held.record(written - held.read_at);
                        early.learn(written, held.due);
                        stats.packets += 1;
                        stats.bytes += held.packet.len() as u64;
                    }
                    Ok(_) | Err(_) => stats.write_errors += 1,
                }
            }
        }
        let next_due = queues.iter().filter_map(|q| q.front().map(|h| h.due)).min();
        let wait = next_due.map_or(STOP_POLL, |due| {
            due.saturating_duration_since(Instant::now() + early.advance)
                .min(STOP_POLL)
        });
        let mut fds = ends.map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let timeout = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is an array of two pollfds that outlives the call;
        // `timeout` likewise; a null signal mask leaves the mask alone.
        let ready = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &timeout, std::ptr::null()) };
        if ready <= 0 {
            continue; // timeout, or EINTR
        }
        for (dir, fd) in fds.iter().enumerate() {
            if fd.revents & libc::POLLIN == 0 {
                continue;
            }
            let mut from = ends[dir];
            loop {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let read_at = Instant::now();
                        if queues[dir].len() >= QUEUE_LIMIT {
                            stats.dropped += 1;
                            continue;
                        }
                        queues[dir].push_back(Held {
                            read_at,
                            due: read_at + hold,
                            packet: buf[..n].to_vec(),
                        });
                    }
                    // WouldBlock: nothing more for now; anything else: the
                    // device is going away, which the stop flag will tell.
                    Err(_) => break,
                }
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_disjoint_slash_30s() {
        assert_eq!(
            subnet_addrs(0),
            ("10.203.0.1".parse().unwrap(), "10.203.0.2".parse().unwrap())
        );
        assert_eq!(
            subnet_addrs(1),
            ("10.203.0.5".parse().unwrap(), "10.203.0.6".parse().unwrap())
        );
        assert_eq!(
            subnet_addrs(64),
            ("10.203.1.1".parse().unwrap(), "10.203.1.2".parse().unwrap())
        );
        assert_eq!(
            subnet_addrs((1 << 14) - 1),
            (
                "10.203.255.253".parse().unwrap(),
                "10.203.255.254".parse().unwrap()
            )
        );
    }

    #[test]
    fn blocks_skip_addresses_in_use_and_wrap() {
        assert_eq!(pick_block(5, &[]), Some(5));
        let taken = subnet_addrs(5 * MAX_LINKS as u32 + 7).0;
        assert_eq!(pick_block(5, &[taken]), Some(6));
        let last = BLOCKS - 1;
        let taken = subnet_addrs(last * MAX_LINKS as u32).1;
        assert_eq!(pick_block(last, &[taken]), Some(0));
    }

    #[test]
    fn addresses_from_ip_output() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                    2: eth0    inet 10.203.0.1/30 scope global eth0\n\
                    3: x    inet6 fe80::1/64 scope link\n";
        assert_eq!(
            parse_inet_addrs(text),
            vec![
                "127.0.0.1".parse::<Ipv4Addr>().unwrap(),
                "10.203.0.1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn wake_advance_follows_the_median_within_the_hold() {
        let hold = Duration::from_micros(100);
        let mut early = WakeAdvance::new(hold);
        let due = Instant::now();
        // Always 40 µs late: the aim moves earlier, one step per packet.
        for _ in 0..30 {
            early.learn(due + Duration::from_micros(40), due);
        }
        assert_eq!(early.advance, Duration::from_micros(30));
        // Never more than the hold itself (a packet cannot leave before it came).
        for _ in 0..500 {
            early.learn(due + Duration::from_millis(5), due);
        }
        assert_eq!(early.advance, hold);
        // Half early, half late: it stays put.
        for _ in 0..10 {
            early.learn(due - Duration::from_micros(5), due);
            early.learn(due + Duration::from_millis(3), due);
        }
        assert_eq!(early.advance, hold);
        for _ in 0..500 {
            early.learn(due - Duration::from_micros(5), due);
        }
        assert_eq!(early.advance, Duration::ZERO);
        // A 0 ms link never sends early.
        let mut none = WakeAdvance::new(Duration::ZERO);
        none.learn(due + Duration::from_micros(40), due);
        assert_eq!(none.advance, Duration::ZERO);
    }

    #[test]
    fn delay_labels() {
        assert_eq!(delay_label(Duration::from_micros(200)), "0.2ms");
        assert_eq!(delay_label(Duration::from_millis(1)), "1ms");
        assert_eq!(delay_label(Duration::ZERO), "0ms");
        assert_eq!(delay_label(Duration::from_micros(1250)), "1.25ms");
        assert_eq!(delay_label(Duration::from_millis(20)), "20ms");
    }
}
