//! The ceiling: the benchmark's workloads driven through the engine's Rust
//! API, with no JavaScript in the loop. `benchmark/run.mjs` builds this in
//! release mode, runs it, and reads the one JSON line it prints.
//!
//! In-process workloads put each side on its own [`Watcher`] (two poller
//! threads) and drive both from one thread, as the JS thread drives gaio's two
//! watchers in the Node benchmark: three threads on however many cores.
//!
//! ```text
//! ceiling echo  --size N --ms T        one connection: write N bytes, read them back, repeat for T ms
//! ceiling burst --conns C --size N     C connections each send N bytes once; time until all are back
//! ceiling serve --proto echo|http      a server: prints {"port"}, answers `stats` / `mem` on stdin
//! ceiling chat-client --port P --conns C --size N   ping-pong N-byte messages until stdin closes
//! ceiling hold --port P --conns C      connect C times (paced by `accepted N` lines) and hold until stdin closes
//! ```
//!
//! Clients connect with at most 1024 connects in flight, like every system in
//! the benchmark, and check every byte they get back.

use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use gaio_engine::{Address, Batch, ConnId, Error, Options, Submission, Watcher};

/// Connects in flight at most (the same bound as the JS systems).
const CONNECTING: usize = 1024;
/// Accepts kept outstanding on a listener.
const ACCEPTS: usize = 512;
/// The most bytes one swap read asks for (the engine's default swap read size).
const READ_LEN: usize = 64 * 1024;
const LISTEN_BACKLOG: u32 = 4096;
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

// ---- requests: a request id is the connection id and the operation ----------

const READ: u32 = 0;
const WRITE: u32 = 1;
const ACCEPT: u32 = 2;
const CONNECT: u32 = 3;

fn req(conn: ConnId, op: u32) -> u32 {
    conn << 2 | op
}

fn split(req: u32) -> (ConnId, u32) {
    (req >> 2, req & 3)
}

fn read(conn: ConnId) -> Submission {
    Submission::Read { req: req(conn, READ), conn, len: READ_LEN, full: false, deadline: None }
}

fn write(conn: ConnId, data: Vec<u8>) -> Submission {
    Submission::Write { req: req(conn, WRITE), conn, data, deadline: None }
}

/// Byte `i` of connection `k`'s payload: the same pattern as benchmark/lib/common.mjs.
fn pattern_byte(k: usize, i: usize) -> u8 {
    ((k + i) % 251) as u8
}

fn payload(k: usize, size: usize) -> Vec<u8> {
    (0..size).map(|i| pattern_byte(k, i)).collect()
}

fn check(k: usize, offset: usize, bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        assert_eq!(b, pattern_byte(k, offset + i), "connection {k}: byte {} differs", offset + i);
    }
}

// ---- one watcher, one driver thread --------------------------------------------

/// A watcher and the submissions to hand it at the end of the current batch.
struct Side {
    watcher: Watcher,
    out: Vec<Submission>,
}

impl Side {
    fn new(wake: &mpsc::Sender<()>) -> Side {
        let wake = wake.clone();
        let watcher = Watcher::new(Options::default(), move || {
            let _ = wake.send(());
        })
        .expect("a watcher starts");
        Side { watcher, out: Vec::new() }
    }

    /// Takes a batch, lets `handle` answer it, submits the answers in one call.
    /// Says whether the batch had anything in it.
    fn turn(&mut self, handle: impl FnOnce(&Batch<'_>, &mut Vec<Submission>)) -> bool {
        let batch = self.watcher.take();
        let any = !batch.completions.is_empty();
        handle(&batch, &mut self.out);
        drop(batch);
        if !self.out.is_empty() {
            self.watcher.submit(self.out.drain(..));
        }
        any
    }
}

/// Waits for a notification from any watcher made with this driver's sender.
struct Driver {
    wake: mpsc::Sender<()>,
    woken: mpsc::Receiver<()>,
}

impl Driver {
    fn new() -> Driver {
        let (wake, woken) = mpsc::channel();
        Driver { wake, woken }
    }

    fn side(&self) -> Side {
        Side::new(&self.wake)
    }

    /// Take first, wait only when a turn found nothing: a notification comes
    /// at most once per take, so one that came before the take is not lost.
    fn idle(&self, any: bool) {
        if !any {
            let _ = self.woken.recv_timeout(Duration::from_millis(20));
        }
    }
}

fn fail(what: &str, error: Option<Error>) -> ! {
    panic!("{what} failed: {error:?}")
}

// ---- the server ----------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Echo,
    Http,
}

/// Counters another thread reads for `stats`.
#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    /// Open now.
    conns: AtomicU64,
    /// Accepted in all.
    accepts: AtomicU64,
}

/// An echo or HTTP "hello" server on one watcher.
struct Server {
    proto: Proto,
    next: ConnId,
    /// Per connection slot: how much of "\r\n\r\n" the last bytes matched.
    http_matched: Vec<u8>,
    counters: Arc<Counters>,
}

impl Server {
    const LISTENER: ConnId = 1;

    /// Listens on 127.0.0.1 (a free port); returns the server and the port.
    fn start(side: &mut Side, proto: Proto) -> (Server, u16) {
        let addr = Address::Inet("127.0.0.1:0".parse().unwrap());
        let fd = gaio_engine::listen(&addr, LISTEN_BACKLOG, false).expect("listen");
        let port = gaio_engine::local_port(std::os::fd::AsFd::as_fd(&fd)).expect("local port");
        let mut server = Server { proto, next: Self::LISTENER + 1, http_matched: Vec::new(), counters: Arc::default() };
        side.out.push(Submission::AdoptListener { conn: Self::LISTENER, fd, path: None });
        for _ in 0..ACCEPTS {
            server.accept(&mut side.out);
        }
        side.watcher.submit(side.out.drain(..));
        (server, port)
    }

    fn accept(&mut self, out: &mut Vec<Submission>) {
        let conn = self.next;
        self.next += 1;
        out.push(Submission::Accept { req: req(conn, ACCEPT), listener: Self::LISTENER, conn });
    }

    fn handle(&mut self, batch: &Batch<'_>, out: &mut Vec<Submission>) {
        for c in &batch.completions {
            let (conn, op) = split(c.req);
            match (op, c.error) {
                (ACCEPT, None) => {
                    self.counters.conns.fetch_add(1, Ordering::Relaxed);
                    self.counters.accepts.fetch_add(1, Ordering::Relaxed);
                    out.push(read(conn));
                    self.accept(out);
                }
                (ACCEPT, Some(Error::WatcherClosed | Error::ConnClosed)) => {}
                (ACCEPT, Some(_)) => self.accept(out), // EMFILE and the like: try again
                (READ, None) => {
                    let bytes = batch.bytes(c);
                    self.counters.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    match self.proto {
                        Proto::Echo => out.push(write(conn, bytes.to_vec())),
                        Proto::Http => {
                            let requests = self.requests_in(conn, bytes);
                            if requests > 0 {
                                out.push(write(conn, RESPONSE.repeat(requests)));
                            }
                        }
                    }
                    out.push(read(conn));
                }
                (READ, Some(_)) => {
                    // End of stream or a reset: close our side too.
                    self.counters.conns.fetch_sub(1, Ordering::Relaxed);
                    out.push(Submission::Free { conn });
                }
                _ => {} // writes: a failed one is followed by a failed read
            }
        }
    }

    /// Counts the requests that end in `bytes` (GET requests without a body,
    /// as wrk sends them), carrying a partial "\r\n\r\n" over to the next read.
    fn requests_in(&mut self, conn: ConnId, bytes: &[u8]) -> usize {
        const END: &[u8; 4] = b"\r\n\r\n";
        let slot = gaio_engine::slot_of(conn);
        if self.http_matched.len() <= slot {
            self.http_matched.resize(slot + 1, 0);
        }
        let mut matched = self.http_matched[slot] as usize;
        let mut requests = 0;
        for &b in bytes {
            if b == END[matched] {
                matched += 1;
                if matched == END.len() {
                    requests += 1;
                    matched = 0;
                }
            } else {
                matched = usize::from(b == b'\r');
            }
        }
        self.http_matched[slot] = matched as u8;
        requests
    }
}

// ---- clients -----------------------------------------------------------------

/// Opens `conns` connections, at most CONNECTING of them started and not yet
/// accepted. In-process workloads see the server's accepts
/// ([`Connector::pump`]); a client in a process of its own counts a connection
/// as accepted when its connect completes (benchmark/lib/common.mjs says why
/// the first is the better bound). Connection k has id k + 1.
struct Connector {
    addr: SocketAddr,
    conns: usize,
    started: usize,
    connected: usize,
    /// Count connects that completed as accepted (no server in this process).
    remote: bool,
}

impl Connector {
    fn new(addr: SocketAddr, conns: usize, remote: bool, out: &mut Vec<Submission>) -> Connector {
        let mut c = Connector { addr, conns, started: 0, connected: 0, remote };
        c.pump(0, out);
        c
    }

    /// Starts connects while fewer than CONNECTING are not yet accepted.
    fn pump(&mut self, accepted: usize, out: &mut Vec<Submission>) {
        while self.started < self.conns && self.started - accepted.min(self.started) < CONNECTING {
            let conn = self.started as ConnId + 1;
            self.started += 1;
            out.push(Submission::Connect { req: req(conn, CONNECT), conn, addr: Address::Inet(self.addr) });
        }
    }

    /// A connect completed. Returns connection k.
    fn connected(&mut self, conn: ConnId, error: Option<Error>, out: &mut Vec<Submission>) -> usize {
        if error.is_some() {
            fail("connect", error);
        }
        self.connected += 1;
        if self.remote {
            self.pump(self.connected, out);
        }
        conn as usize - 1
    }
}

/// `conns` connections each write `size` bytes once and read them back.
struct Burst {
    connector: Connector,
    size: usize,
    got: Vec<usize>,
    finished: usize,
}

impl Burst {
    fn handle(&mut self, batch: &Batch<'_>, out: &mut Vec<Submission>) {
        for c in &batch.completions {
            let (conn, op) = split(c.req);
            match op {
                CONNECT => {
                    let k = self.connector.connected(conn, c.error, out);
                    out.push(write(conn, payload(k, self.size)));
                    out.push(read(conn));
                }
                READ => {
                    if c.error.is_some() {
                        fail("client read", c.error);
                    }
                    let k = conn as usize - 1;
                    let bytes = batch.bytes(c);
                    check(k, self.got[k], bytes);
                    self.got[k] += bytes.len();
                    assert!(self.got[k] <= self.size, "connection {k}: more bytes than sent");
                    if self.got[k] == self.size {
                        self.finished += 1;
                    } else {
                        out.push(read(conn));
                    }
                }
                WRITE if c.error.is_some() => fail("client write", c.error),
                _ => {}
            }
        }
    }
}

/// One connection writing `size` bytes and reading them back, over and over.
struct Stream {
    size: usize,
    message: Vec<u8>,
    got: usize,
    round_trips: u64,
    /// When the connection was up and the first message went out.
    started: Option<Instant>,
    duration: Duration,
    done: bool,
}

impl Stream {
    const CONN: ConnId = 1;

    fn handle(&mut self, batch: &Batch<'_>, out: &mut Vec<Submission>) {
        for c in &batch.completions {
            let (_, op) = split(c.req);
            if c.error.is_some() {
                fail("echo client", c.error);
            }
            match op {
                CONNECT => {
                    self.started = Some(Instant::now());
                    out.push(write(Self::CONN, self.message.clone()));
                    out.push(read(Self::CONN));
                }
                READ => {
                    let bytes = batch.bytes(c);
                    check(0, self.got, bytes);
                    self.got += bytes.len();
                    if self.got < self.size {
                        out.push(read(Self::CONN));
                        continue;
                    }
                    assert_eq!(self.got, self.size, "more bytes than sent");
                    self.got = 0;
                    self.round_trips += 1;
                    if self.started.expect("connected").elapsed() >= self.duration {
                        self.done = true;
                    } else {
                        out.push(write(Self::CONN, self.message.clone()));
                        out.push(read(Self::CONN));
                    }
                }
                _ => {}
            }
        }
    }
}

/// Chat: every connection ping-pongs one `size`-byte message at a time. A
/// message carries its connection and sequence number, so a crossed or stale
/// echo is caught.
struct Chat {
    connector: Connector,
    size: usize,
    seq: Vec<u32>,
    got: Vec<Vec<u8>>,
    round_trips: u64,
    bytes: u64,
}

impl Chat {
    fn message(&self, k: usize) -> Vec<u8> {
        let mut m = payload(k, self.size);
        m[..4].copy_from_slice(&(k as u32).to_le_bytes());
        m[4..8].copy_from_slice(&self.seq[k].to_le_bytes());
        m
    }

    fn handle(&mut self, batch: &Batch<'_>, out: &mut Vec<Submission>) {
        for c in &batch.completions {
            let (conn, op) = split(c.req);
            match op {
                CONNECT => {
                    let k = self.connector.connected(conn, c.error, out);
                    out.push(write(conn, self.message(k)));
                    out.push(read(conn));
                }
                READ => {
                    if c.error.is_some() {
                        fail("chat client read", c.error);
                    }
                    let k = conn as usize - 1;
                    let bytes = batch.bytes(c);
                    self.bytes += bytes.len() as u64;
                    self.got[k].extend_from_slice(bytes);
                    assert!(self.got[k].len() <= self.size, "connection {k}: more bytes than sent");
                    if self.got[k].len() == self.size {
                        assert!(self.got[k] == self.message(k), "connection {k}: echo differs");
                        self.got[k].clear();
                        self.seq[k] = self.seq[k].wrapping_add(1);
                        self.round_trips += 1;
                        out.push(write(conn, self.message(k)));
                    }
                    out.push(read(conn));
                }
                WRITE if c.error.is_some() => fail("chat client write", c.error),
                _ => {}
            }
        }
    }
}

// ---- modes -------------------------------------------------------------------

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One connection, `size` bytes out and back, for `ms` milliseconds.
fn echo(size: usize, ms: u64) -> String {
    let driver = Driver::new();
    let (mut server_side, mut client_side) = (driver.side(), driver.side());
    let (mut server, port) = Server::start(&mut server_side, Proto::Echo);
    let duration = Duration::from_millis(ms);
    let mut stream = Stream { size, message: payload(0, size), got: 0, round_trips: 0, started: None, duration, done: false };
    client_side.watcher.submit([Submission::Connect { req: req(Stream::CONN, CONNECT), conn: Stream::CONN, addr: Address::Inet(loopback(port)) }]);
    while !stream.done {
        let any = server_side.turn(|b, out| server.handle(b, out)) | client_side.turn(|b, out| stream.handle(b, out));
        driver.idle(any);
    }
    // Timed from the first write (after the connect), as the JS systems are.
    let seconds = stream.started.expect("connected").elapsed().as_secs_f64();
    format!(r#"{{"roundTrips":{},"bytes":{},"seconds":{seconds}}}"#, stream.round_trips, stream.round_trips * size as u64)
}

/// `conns` connections each send `size` bytes; seconds from the first connect to the last byte back.
fn burst(conns: usize, size: usize) -> String {
    let driver = Driver::new();
    let (mut server_side, mut client_side) = (driver.side(), driver.side());
    let (mut server, port) = Server::start(&mut server_side, Proto::Echo);
    let start = Instant::now();
    let connector = Connector::new(loopback(port), conns, false, &mut client_side.out);
    client_side.watcher.submit(client_side.out.drain(..));
    let mut burst = Burst { connector, size, got: vec![0; conns], finished: 0 };
    while burst.finished < conns {
        let mut any = server_side.turn(|b, out| server.handle(b, out));
        let accepted = server.counters.accepts.load(Ordering::Relaxed) as usize;
        any |= client_side.turn(|b, out| {
            burst.handle(b, out);
            burst.connector.pump(accepted, out);
        });
        driver.idle(any);
    }
    let seconds = start.elapsed().as_secs_f64();
    format!(r#"{{"seconds":{seconds},"conns":{conns},"bytes":{}}}"#, conns * size)
}

fn cpu_micros() -> u64 {
    // SAFETY: rusage is plain data, written by getrusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Runs `on_line` for every stdin line on a thread of its own; sets `closed` at EOF and wakes the driver.
fn watch_stdin(driver: &Driver, closed: Arc<AtomicBool>, mut on_line: impl FnMut(&str) + Send + 'static) {
    let wake = driver.wake.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) => on_line(line.trim()),
                Err(_) => break,
            }
        }
        closed.store(true, Ordering::Release);
        let _ = wake.send(());
    });
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A server process: the harness sends `stats` and `mem` lines, and closes stdin to stop it.
fn serve(proto: Proto) {
    let driver = Driver::new();
    let mut side = driver.side();
    let (mut server, port) = Server::start(&mut side, proto);
    let counters = server.counters.clone();
    let start = Instant::now();
    let closed = Arc::new(AtomicBool::new(false));
    watch_stdin(&driver, closed.clone(), move |line| match line {
        "stats" => say(&format!(
            r#"{{"cpuUs":{},"bytes":{},"conns":{},"accepts":{},"ns":{}}}"#,
            cpu_micros(),
            counters.bytes.load(Ordering::Relaxed),
            counters.conns.load(Ordering::Relaxed),
            counters.accepts.load(Ordering::Relaxed),
            start.elapsed().as_nanos()
        )),
        "mem" => say(&format!(r#"{{"rss":{}}}"#, rss_bytes())),
        _ => say(r#"{"error":"unknown command"}"#),
    });
    say(&format!(r#"{{"port":{port}}}"#));
    while !closed.load(Ordering::Acquire) {
        let any = side.turn(|b, out| server.handle(b, out));
        driver.idle(any);
    }
    std::process::exit(0);
}

fn chat_client(port: u16, conns: usize, size: usize) {
    assert!(size >= 8, "a chat message holds its connection and sequence number");
    let driver = Driver::new();
    let mut side = driver.side();
    let connector = Connector::new(loopback(port), conns, true, &mut side.out);
    side.watcher.submit(side.out.drain(..));
    let mut chat = Chat { connector, size, seq: vec![0; conns], got: vec![Vec::with_capacity(size); conns], round_trips: 0, bytes: 0 };
    let closed = Arc::new(AtomicBool::new(false));
    watch_stdin(&driver, closed.clone(), |_| {});
    let mut ready = false;
    while !closed.load(Ordering::Acquire) {
        let any = side.turn(|b, out| chat.handle(b, out));
        if !ready && chat.connector.connected == conns {
            ready = true;
            say(&format!(r#"{{"ready":true,"conns":{conns}}}"#));
        }
        driver.idle(any);
    }
    say(&format!(r#"{{"roundTrips":{},"bytes":{}}}"#, chat.round_trips, chat.bytes));
    std::process::exit(0);
}

/// Holds `conns` connections until stdin closes. The harness feeds the
/// server's accept count as `accepted N` lines, so at most CONNECTING are
/// started and not yet accepted, as in the in-process workloads (a server
/// that accepts slowly would otherwise overflow its listen queue).
fn hold(port: u16, conns: usize) {
    let driver = Driver::new();
    let mut side = driver.side();
    let mut connector = Connector::new(loopback(port), conns, false, &mut side.out);
    side.watcher.submit(side.out.drain(..));
    let closed = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let told = accepted.clone();
    let wake = driver.wake.clone();
    watch_stdin(&driver, closed.clone(), move |line| {
        if let Some(n) = line.strip_prefix("accepted ").and_then(|n| n.parse().ok()) {
            told.store(n, Ordering::Release);
            let _ = wake.send(());
        }
    });
    let mut ready = false;
    while !closed.load(Ordering::Acquire) {
        let accepted = accepted.load(Ordering::Acquire) as usize;
        let any = side.turn(|b, out| {
            for c in &b.completions {
                if let (conn, CONNECT) = split(c.req) {
                    connector.connected(conn, c.error, out);
                }
            }
            connector.pump(accepted, out);
        });
        if !ready && connector.connected == conns {
            ready = true;
            say(&format!(r#"{{"connected":{conns}}}"#));
        }
        driver.idle(any);
    }
    std::process::exit(0);
}

fn raise_open_file_limit() {
    // SAFETY: rlimit is plain data; getrlimit/setrlimit with valid pointers.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() {
    raise_open_file_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<&str> {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
    };
    let number = |name: &str| -> usize {
        flag(name).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name} needs a number"))
    };
    match args.first().map(String::as_str) {
        Some("echo") => say(&echo(number("--size"), number("--ms") as u64)),
        Some("burst") => say(&burst(number("--conns"), number("--size"))),
        Some("serve") => serve(if flag("--proto") == Some("http") { Proto::Http } else { Proto::Echo }),
        Some("chat-client") => chat_client(number("--port") as u16, number("--conns"), number("--size")),
        Some("hold") => hold(number("--port") as u16, number("--conns")),
        _ => {
            eprintln!("usage: ceiling echo|burst|serve|chat-client|hold [flags]; see the top of examples/ceiling.rs");
            std::process::exit(2);
        }
    }
}
