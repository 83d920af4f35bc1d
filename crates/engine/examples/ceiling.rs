//! The ceiling: the benchmark's workloads driven through the engine's Rust
//! API, with no JavaScript in the loop. `benchmark/run.mjs` builds this in
//! release mode, runs it, and reads the one JSON line it prints.
//!
//! In-process workloads put each side on its own [`PollerThread`] (two poller
//! threads) and drive both from one thread, as the JS thread drives gaio's two
//! watchers in the Node benchmark: three threads on however many cores.
//!
//! ```text
//! ceiling echo  --size N --ms T        one connection: write N bytes, read them back, repeat for T ms
//! ceiling burst --conns C --size N     C connections each send N bytes once; time until all are back,
//!                                      a cold pass and then a warm one
//! ceiling serve --proto echo|http|frame   a server: prints {"port"}, answers `stats` / `mem` on stdin
//! ceiling chat-client [--host A] --port P --conns C --size N   ping-pong N-byte messages until stdin closes
//!                                      (to IPv4 address A, 127.0.0.1 by default)
//! ceiling hold --port P --conns C      connect C times (paced by `accepted N` lines) and hold until stdin closes
//! ceiling burst-client --port P --conns C --size N --passes K
//!                                      burst against a server in another process (paced by `accepted N`);
//!                                      after each pass closes every connection and waits for a `next` line
//! ceiling echo-client --port P --size N --ms T   echo against a server in another process
//! ceiling latency --port P --proto echo|http --conns C --rate R --warm-ms W --ms T --size N
//!                                      open loop: R messages/s on a fixed schedule, each reply timed from
//!                                      its scheduled send; p50/p99/p99.9 of the replies sent after W ms
//! ceiling churn --port P --conns C --ms T --size N   C loops of connect, echo N bytes, close, for T ms
//! ceiling hold ... --expect N          also read: print {"round"} each time every connection got N more bytes
//! ceiling sink --port P --bytes N      one connection that reads nothing until a `read` line, then N bytes
//! ceiling frames --port P --conns C --ms T   length-prefixed frames in batches of 24 per write; checks each ack
//! ```
//!
//! Clients connect with at most 1024 connects in flight, like every system in
//! the benchmark, and check every byte they get back.

use std::io::{BufRead, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use gaio_engine::{Address, Batch, Completion, ConnId, Data, Error, Exchange, Options, PollerThread, Submission};

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
    exchange: Exchange,
    _poller: PollerThread,
    out: Vec<Submission>,
}

impl Side {
    fn new(wake: &mpsc::Sender<()>) -> Side {
        let wake = wake.clone();
        let (exchange, poller) = PollerThread::start(&Options::default(), None, move || {
            let _ = wake.send(());
        })
        .expect("a watcher starts");
        Side { exchange, _poller: poller, out: Vec::new() }
    }

    /// Takes a batch, lets `handle` answer it, submits the answers in one call.
    /// Says whether the batch had anything in it.
    fn turn(&mut self, handle: impl FnOnce(&Batch<'_>, &mut Vec<Submission>)) -> bool {
        let batch = self.exchange.take();
        let any = !batch.completions.is_empty();
        handle(&batch, &mut self.out);
        drop(batch);
        if !self.out.is_empty() {
            self.exchange.submit(self.out.drain(..));
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

    /// As [`Driver::idle`], but wakes by `deadline` at the latest (a send schedule).
    fn idle_until(&self, any: bool, deadline: Instant) {
        if !any {
            let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(20));
            let _ = self.woken.recv_timeout(wait);
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
    /// Length-prefixed frames, each answered with its length and last 4 bytes (benchmark/lib/common.mjs's Framer).
    Frame,
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
    /// Per connection slot: the bytes of an unfinished frame, kept across reads.
    kept: Vec<Vec<u8>>,
    counters: Arc<Counters>,
}

impl Server {
    const LISTENER: ConnId = 1;

    /// Listens on 127.0.0.1 (a free port); returns the server and the port.
    fn start(side: &mut Side, proto: Proto) -> (Server, u16) {
        let addr = Address::Inet("127.0.0.1:0".parse().unwrap());
        let port = side.exchange.listen(Self::LISTENER, &addr, LISTEN_BACKLOG, false).expect("listen");
        let mut server = Server { proto, next: Self::LISTENER + 1, http_matched: Vec::new(), kept: Vec::new(), counters: Arc::default() };
        for _ in 0..ACCEPTS {
            server.accept(&mut side.out);
        }
        side.exchange.submit(side.out.drain(..));
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
                        Proto::Frame => {
                            let acks = self.frames_in(conn, bytes);
                            if !acks.is_empty() {
                                out.push(write(conn, acks));
                            }
                        }
                    }
                    out.push(read(conn));
                }
                (READ, Some(_)) => {
                    // End of stream or a reset: close our side too.
                    if let Some(kept) = self.kept.get_mut(gaio_engine::slot_of(conn)) {
                        kept.clear();
                    }
                    self.counters.conns.fetch_sub(1, Ordering::Relaxed);
                    out.push(Submission::Free { conn });
                }
                _ => {} // writes: a failed one is followed by a failed read
            }
        }
    }

    /// The acks of the frames that `bytes` complete; an unfinished frame's bytes are kept (copied).
    fn frames_in(&mut self, conn: ConnId, bytes: &[u8]) -> Vec<u8> {
        let slot = gaio_engine::slot_of(conn);
        if self.kept.len() <= slot {
            self.kept.resize_with(slot + 1, Vec::new);
        }
        let mut acks = Vec::new();
        let kept = &mut self.kept[slot];
        if kept.is_empty() {
            let used = parse_frames(bytes, &mut acks);
            kept.extend_from_slice(&bytes[used..]);
        } else {
            kept.extend_from_slice(bytes);
            let used = parse_frames(kept, &mut acks);
            kept.drain(..used);
        }
        acks
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

/// Makes a client socket's close a reset (SO_LINGER 0): a normal close leaves
/// a TIME_WAIT socket for 60 s, and tens of thousands of them slow the next
/// run's connects. Every client of the benchmark that can, closes this way.
fn abortive_close(c: &Completion) {
    if let Data::Socket(fd) = c.data {
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: fd is the connection's open socket (the engine's until freed); the option is plain data.
        unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, (&linger as *const libc::linger).cast(), std::mem::size_of::<libc::linger>() as libc::socklen_t);
        }
    }
}

/// Appends an ack (length, last 4 payload bytes) for each whole frame at the front of `data`; returns the bytes used.
fn parse_frames(data: &[u8], acks: &mut Vec<u8>) -> usize {
    let mut at = 0;
    while data.len() - at >= 4 {
        let n = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if data.len() - at - 4 < n {
            break;
        }
        acks.extend_from_slice(&(n as u32).to_le_bytes());
        acks.extend_from_slice(&data[at + n..at + 4 + n]);
        at += 4 + n;
    }
    at
}

// ---- clients -----------------------------------------------------------------

/// Opens `conns` connections, at most CONNECTING of them started and not yet
/// accepted. In-process workloads see the server's accepts
/// ([`Connector::pump`]); a client in a process of its own counts a connection
/// as accepted when its connect completes (benchmark/lib/common.mjs says why
/// the first is the better bound). Connection k has id base + k + 1.
struct Connector {
    addr: SocketAddr,
    base: ConnId,
    conns: usize,
    started: usize,
    connected: usize,
    /// Count connects that completed as accepted (no server in this process).
    remote: bool,
}

impl Connector {
    fn new(addr: SocketAddr, conns: usize, remote: bool, out: &mut Vec<Submission>) -> Connector {
        Connector::with_base(addr, 0, conns, remote, out)
    }

    /// Ids from `base + 1`: a later pass must not reuse the ids an earlier one freed in the same batch.
    fn with_base(addr: SocketAddr, base: ConnId, conns: usize, remote: bool, out: &mut Vec<Submission>) -> Connector {
        let mut c = Connector { addr, base, conns, started: 0, connected: 0, remote };
        c.pump(0, out);
        c
    }

    /// Starts connects while fewer than CONNECTING are not yet accepted.
    fn pump(&mut self, accepted: usize, out: &mut Vec<Submission>) {
        while self.started < self.conns && self.started - accepted.min(self.started) < CONNECTING {
            let conn = self.base + self.started as ConnId + 1;
            self.started += 1;
            out.push(Submission::Connect { req: req(conn, CONNECT), conn, addr: Address::Inet(self.addr), deadline: None });
        }
    }

    /// A connect completed. Returns connection k.
    fn connected(&mut self, conn: ConnId, c: &Completion, out: &mut Vec<Submission>) -> usize {
        if c.error.is_some() {
            fail("connect", c.error);
        }
        abortive_close(c);
        self.connected += 1;
        if self.remote {
            self.pump(self.connected, out);
        }
        self.k(conn)
    }

    fn k(&self, conn: ConnId) -> usize {
        (conn - self.base) as usize - 1
    }

    /// A read completed on `conn` (`what` names the client in a failure):
    /// its bytes go after those connection `k` got before; returns `k`.
    fn received(&self, got: &mut [Vec<u8>], conn: ConnId, c: &Completion, bytes: &[u8], what: &str) -> usize {
        if c.error.is_some() {
            fail(what, c.error);
        }
        let k = self.k(conn);
        got[k].extend_from_slice(bytes);
        k
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
                    let k = self.connector.connected(conn, c, out);
                    out.push(write(conn, payload(k, self.size)));
                    out.push(read(conn));
                }
                READ => {
                    if c.error.is_some() {
                        fail("client read", c.error);
                    }
                    let k = self.connector.k(conn);
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

/// Message `seq` of connection k: the payload pattern with k and seq in its first 8 bytes.
fn tagged(k: usize, seq: u32, size: usize) -> Vec<u8> {
    let mut m = payload(k, size);
    m[..4].copy_from_slice(&(k as u32).to_le_bytes());
    m[4..8].copy_from_slice(&seq.to_le_bytes());
    m
}

impl Chat {
    fn message(&self, k: usize) -> Vec<u8> {
        tagged(k, self.seq[k], self.size)
    }

    fn handle(&mut self, batch: &Batch<'_>, out: &mut Vec<Submission>) {
        for c in &batch.completions {
            let (conn, op) = split(c.req);
            match op {
                CONNECT => {
                    let k = self.connector.connected(conn, c, out);
                    out.push(write(conn, self.message(k)));
                    out.push(read(conn));
                }
                READ => {
                    let bytes = batch.bytes(c);
                    self.bytes += bytes.len() as u64;
                    let k = self.connector.received(&mut self.got, conn, c, bytes, "chat client read");
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

/// The open-loop client: messages go out on a fixed schedule whatever the
/// replies do, and each reply is timed from its scheduled send, so a server
/// that stalls is charged for every message that waited (no coordinated
/// omission). Several messages may be in flight on one connection (HTTP:
/// pipelined); replies come back in order per connection.
struct Latency {
    connector: Connector,
    http: bool,
    size: usize,
    /// Per connection: the scheduled send times of the messages not yet answered.
    pending: Vec<std::collections::VecDeque<Instant>>,
    sent_seq: Vec<u32>,
    got_seq: Vec<u32>,
    got: Vec<Vec<u8>>,
    /// Microseconds, for replies to messages scheduled inside the window.
    samples: Vec<u32>,
    window: (Instant, Instant),
    received: u64,
}

const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

impl Latency {
    fn send(&mut self, k: usize, at: Instant, out: &mut Vec<Submission>) {
        let conn = self.connector.base + k as ConnId + 1;
        let data = if self.http { HTTP_REQUEST.to_vec() } else { tagged(k, self.sent_seq[k], self.size) };
        self.sent_seq[k] = self.sent_seq[k].wrapping_add(1);
        self.pending[k].push_back(at);
        out.push(write(conn, data));
    }

    /// Takes the complete replies off the front of connection k's bytes; checks each.
    fn replies(&mut self, k: usize) {
        loop {
            let used = if self.http { http_reply(&self.got[k]) } else { (self.got[k].len() >= self.size).then_some(self.size) };
            let Some(used) = used else { return };
            if !self.http {
                assert!(self.got[k][..used] == tagged(k, self.got_seq[k], self.size), "connection {k}: echo differs");
            }
            self.got_seq[k] = self.got_seq[k].wrapping_add(1);
            self.got[k].drain(..used);
            let at = self.pending[k].pop_front().unwrap_or_else(|| panic!("connection {k}: a reply to nothing"));
            self.received += 1;
            if at >= self.window.0 && at < self.window.1 {
                self.samples.push(at.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
        }
    }

    fn handle(&mut self, batch: &Batch<'_>, out: &mut Vec<Submission>) {
        for c in &batch.completions {
            let (conn, op) = split(c.req);
            match op {
                CONNECT => {
                    self.connector.connected(conn, c, out);
                    out.push(read(conn));
                }
                READ => {
                    let k = self.connector.received(&mut self.got, conn, c, batch.bytes(c), "latency client read");
                    self.replies(k);
                    out.push(read(conn));
                }
                WRITE if c.error.is_some() => fail("latency client write", c.error),
                _ => {}
            }
        }
    }
}

/// The length of the complete "200, body hello" response at the front of
/// `bytes`, None while it is incomplete; panics on any other response (the
/// responders' headers differ, so this parses Content-Length).
fn http_reply(bytes: &[u8]) -> Option<usize> {
    let head = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&bytes[..head]).expect("response head is text");
    assert!(text.starts_with("HTTP/1.1 200 "), "not a 200 response: {text:?}");
    let length: usize = text
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim().parse().expect("a length")))
        .expect("a Content-Length");
    if bytes.len() < head + length {
        return None;
    }
    assert!(&bytes[head..head + length] == b"hello", "the body is not hello");
    Some(head + length)
}

/// Churn: `conns` loops each connect, echo `size` bytes, check, close, again.
struct Churn {
    addr: SocketAddr,
    size: usize,
    next: ConnId,
    got: std::collections::HashMap<ConnId, usize>,
    done: u64,
    stop: bool,
}

impl Churn {
    fn connect(&mut self, out: &mut Vec<Submission>) {
        // Fresh ids (below 2^30, the request packing's room): a freed id is not reused within a batch.
        self.next = self.next % (1 << 29) + 1;
        let conn = self.next;
        self.got.insert(conn, 0);
        out.push(Submission::Connect { req: req(conn, CONNECT), conn, addr: Address::Inet(self.addr), deadline: None });
    }

    fn handle(&mut self, batch: &Batch<'_>, out: &mut Vec<Submission>) {
        for c in &batch.completions {
            let (conn, op) = split(c.req);
            match op {
                CONNECT => {
                    if c.error.is_some() {
                        fail("churn connect", c.error);
                    }
                    abortive_close(c);
                    out.push(write(conn, payload(conn as usize, self.size)));
                    out.push(read(conn));
                }
                READ => {
                    if c.error.is_some() {
                        fail("churn read", c.error);
                    }
                    let bytes = batch.bytes(c);
                    let got = self.got.get_mut(&conn).expect("a live connection");
                    check(conn as usize, *got, bytes);
                    *got += bytes.len();
                    if *got < self.size {
                        out.push(read(conn));
                        continue;
                    }
                    assert_eq!(*got, self.size, "more bytes than sent");
                    self.got.remove(&conn);
                    self.done += 1;
                    out.push(Submission::Free { conn });
                    if !self.stop {
                        self.connect(out);
                    }
                }
                WRITE if c.error.is_some() => fail("churn write", c.error),
                _ => {}
            }
        }
    }
}

/// Frames: every connection writes a batch of FRAMES_PER_BATCH length-prefixed
/// frames (4 to 8195 payload bytes each, so frames straddle reads) in one
/// write, checks each 8-byte ack, and writes the next batch.
struct Frames {
    connector: Connector,
    seq: Vec<u32>,
    /// Per connection: the acks still due (length and last 4 bytes).
    due: Vec<std::collections::VecDeque<[u8; 8]>>,
    got: Vec<Vec<u8>>,
    frames: u64,
    bytes: u64,
    stop: bool,
    busy: usize,
}

const FRAMES_PER_BATCH: usize = 24;

impl Frames {
    fn batch(&mut self, k: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..FRAMES_PER_BATCH {
            let seq = self.seq[k] as usize;
            self.seq[k] = self.seq[k].wrapping_add(1);
            let n = 4 + (k * 131 + seq * 7919) % 8192;
            out.extend_from_slice(&(n as u32).to_le_bytes());
            out.extend((0..n).map(|i| pattern_byte(k, seq + i)));
            let mut ack = [0; 8];
            ack[..4].copy_from_slice(&(n as u32).to_le_bytes());
            ack[4..].copy_from_slice(&out[out.len() - 4..]);
            self.due[k].push_back(ack);
        }
        self.bytes += out.len() as u64;
        out
    }

    fn handle(&mut self, batch: &Batch<'_>, out: &mut Vec<Submission>) {
        for c in &batch.completions {
            let (conn, op) = split(c.req);
            match op {
                CONNECT => {
                    let k = self.connector.connected(conn, c, out);
                    self.busy += 1;
                    let data = self.batch(k);
                    out.push(write(conn, data));
                    out.push(read(conn));
                }
                READ => {
                    let k = self.connector.received(&mut self.got, conn, c, batch.bytes(c), "frames client read");
                    let whole = self.got[k].len() / 8 * 8;
                    for ack in self.got[k][..whole].chunks(8) {
                        let want = self.due[k].pop_front().unwrap_or_else(|| panic!("connection {k}: an ack for no frame"));
                        assert!(ack == want, "connection {k}: ack {ack:?} is not {want:?}");
                    }
                    self.got[k].drain(..whole);
                    if self.due[k].is_empty() {
                        self.frames += FRAMES_PER_BATCH as u64;
                        if self.stop {
                            self.busy -= 1;
                            continue;
                        }
                        let data = self.batch(k);
                        out.push(write(conn, data));
                    }
                    out.push(read(conn));
                }
                WRITE if c.error.is_some() => fail("frames client write", c.error),
                _ => {}
            }
        }
    }
}

// ---- modes -------------------------------------------------------------------

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One connection, `size` bytes out and back, for `ms` milliseconds, with the server in this process.
fn echo(size: usize, ms: u64) -> String {
    let driver = Driver::new();
    let mut server_side = driver.side();
    let (mut server, port) = Server::start(&mut server_side, Proto::Echo);
    stream(&driver, port, size, ms, Some((&mut server_side, &mut server)))
}

/// The same against a server in another process.
fn echo_client(port: u16, size: usize, ms: u64) -> String {
    stream(&Driver::new(), port, size, ms, None)
}

/// Drives one echo connection; `server` is the server's side when it runs in this process.
fn stream(driver: &Driver, port: u16, size: usize, ms: u64, mut server: Option<(&mut Side, &mut Server)>) -> String {
    let mut client_side = driver.side();
    let duration = Duration::from_millis(ms);
    let mut stream = Stream { size, message: payload(0, size), got: 0, round_trips: 0, started: None, duration, done: false };
    client_side.exchange.submit([Submission::Connect { req: req(Stream::CONN, CONNECT), conn: Stream::CONN, addr: Address::Inet(loopback(port)), deadline: None }]);
    while !stream.done {
        let mut any = false;
        if let Some((side, server)) = server.as_mut() {
            any |= side.turn(|b, out| server.handle(b, out));
        }
        any |= client_side.turn(|b, out| stream.handle(b, out));
        driver.idle(any);
    }
    // Timed from the first write (after the connect), as the JS systems are.
    let seconds = stream.started.expect("connected").elapsed().as_secs_f64();
    format!(r#"{{"roundTrips":{},"bytes":{},"seconds":{seconds}}}"#, stream.round_trips, stream.round_trips * size as u64)
}

/// `conns` connections each send `size` bytes; seconds from the first connect
/// to the last byte back, for a cold first pass and then a warm one (the
/// first pass's connections closed, the same watchers).
fn burst(conns: usize, size: usize) -> String {
    let driver = Driver::new();
    let (mut server_side, mut client_side) = (driver.side(), driver.side());
    let (mut server, port) = Server::start(&mut server_side, Proto::Echo);
    let mut seconds = [0.0; 2];
    for (pass, seconds) in seconds.iter_mut().enumerate() {
        let start = Instant::now();
        let accepts_before = server.counters.accepts.load(Ordering::Relaxed) as usize;
        let base = (pass * conns) as ConnId;
        let connector = Connector::with_base(loopback(port), base, conns, false, &mut client_side.out);
        client_side.exchange.submit(client_side.out.drain(..));
        let mut burst = Burst { connector, size, got: vec![0; conns], finished: 0 };
        while burst.finished < conns {
            let mut any = server_side.turn(|b, out| server.handle(b, out));
            let accepted = server.counters.accepts.load(Ordering::Relaxed) as usize - accepts_before;
            any |= client_side.turn(|b, out| {
                burst.handle(b, out);
                burst.connector.pump(accepted, out);
            });
            driver.idle(any);
        }
        *seconds = start.elapsed().as_secs_f64();
        // Close this pass's connections and let the server see every one go.
        client_side.exchange.submit((1..=conns as ConnId).map(|k| Submission::Free { conn: base + k }));
        while server.counters.conns.load(Ordering::Relaxed) > 0 {
            let any = server_side.turn(|b, out| server.handle(b, out)) | client_side.turn(|_, _| {});
            driver.idle(any);
        }
    }
    format!(r#"{{"cold":{},"warm":{},"conns":{conns},"bytes":{}}}"#, seconds[0], seconds[1], conns * size)
}

/// Bursts against a server in another process: `passes` passes, each paced
/// by `accepted N` lines (N counted from the pass's start) and followed by
/// closing every connection and waiting for a `next` line.
fn burst_client(port: u16, conns: usize, size: usize, passes: usize) {
    let driver = Driver::new();
    let mut side = driver.side();
    let closed = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let go = Arc::new(AtomicU64::new(0));
    let (told, next) = (accepted.clone(), go.clone());
    let wake = driver.wake.clone();
    watch_stdin(&driver, closed.clone(), move |line| {
        if let Some(n) = line.strip_prefix("accepted ").and_then(|n| n.parse().ok()) {
            told.store(n, Ordering::Release);
        } else if line == "next" {
            // Reset here, in order with the lines: counts after `next` belong to the next pass.
            told.store(0, Ordering::Release);
            next.fetch_add(1, Ordering::Release);
        }
        let _ = wake.send(());
    });
    for pass in 0..passes {
        while go.load(Ordering::Acquire) < pass as u64 {
            if closed.load(Ordering::Acquire) {
                std::process::exit(0);
            }
            let any = side.turn(|_, _| {});
            driver.idle(any);
        }
        let start = Instant::now();
        let base = (pass * conns) as ConnId;
        let connector = Connector::with_base(loopback(port), base, conns, false, &mut side.out);
        side.exchange.submit(side.out.drain(..));
        let mut burst = Burst { connector, size, got: vec![0; conns], finished: 0 };
        while burst.finished < conns {
            let accepted = accepted.load(Ordering::Acquire) as usize;
            let any = side.turn(|b, out| {
                burst.handle(b, out);
                burst.connector.pump(accepted, out);
            });
            driver.idle(any);
        }
        say(&format!(r#"{{"pass":{pass},"seconds":{},"bytes":{}}}"#, start.elapsed().as_secs_f64(), conns * size));
        side.exchange.submit((1..=conns as ConnId).map(|k| Submission::Free { conn: base + k }));
    }
    while !closed.load(Ordering::Acquire) {
        let any = side.turn(|_, _| {});
        driver.idle(any);
    }
    std::process::exit(0);
}

/// The open-loop client (see [`Latency`]): `rate` messages/s over `conns`
/// connections in turn, for `warm_ms` and then the `ms` window that is timed.
#[allow(clippy::too_many_arguments)]
fn latency(port: u16, http: bool, conns: usize, rate: f64, warm_ms: u64, ms: u64, size: usize) {
    let driver = Driver::new();
    let mut side = driver.side();
    let connector = Connector::new(loopback(port), conns, true, &mut side.out);
    side.exchange.submit(side.out.drain(..));
    let now = Instant::now();
    let mut lat = Latency {
        connector,
        http,
        size,
        pending: vec![Default::default(); conns],
        sent_seq: vec![0; conns],
        got_seq: vec![0; conns],
        got: vec![Vec::new(); conns],
        samples: Vec::new(),
        window: (now, now),
        received: 0,
    };
    while lat.connector.connected < conns {
        let any = side.turn(|b, out| lat.handle(b, out));
        driver.idle(any);
    }
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    lat.window = (start + Duration::from_millis(warm_ms), start + Duration::from_millis(warm_ms + ms));
    let (mut next, mut k, mut sent) = (start, 0, 0u64);
    loop {
        let now = Instant::now();
        while next <= now && next < lat.window.1 {
            lat.send(k, next, &mut side.out);
            k = (k + 1) % conns;
            next += interval;
            sent += 1;
        }
        let any = side.turn(|b, out| lat.handle(b, out));
        if next >= lat.window.1 && lat.received == sent {
            break;
        }
        assert!(now < lat.window.1 + Duration::from_secs(10), "{} of {sent} replies missing 10 s after the last send", sent - lat.received);
        driver.idle_until(any, next);
    }
    let mut s = std::mem::take(&mut lat.samples);
    s.sort_unstable();
    let at = |q: f64| s.get(((q * s.len() as f64) as usize).min(s.len().saturating_sub(1))).copied().unwrap_or(0);
    say(&format!(
        r#"{{"p50":{},"p99":{},"p999":{},"max":{},"count":{},"rate":{}}}"#,
        at(0.5),
        at(0.99),
        at(0.999),
        s.last().copied().unwrap_or(0),
        s.len(),
        s.len() as f64 / (ms as f64 / 1000.0)
    ));
}

/// Connection churn against a server in another process (see [`Churn`]).
fn churn(port: u16, conns: usize, ms: u64, size: usize) {
    let driver = Driver::new();
    let mut side = driver.side();
    let mut churn = Churn { addr: loopback(port), size, next: 0, got: Default::default(), done: 0, stop: false };
    for _ in 0..conns {
        churn.connect(&mut side.out);
    }
    side.exchange.submit(side.out.drain(..));
    let start = Instant::now();
    let end = start + Duration::from_millis(ms);
    while !churn.stop || !churn.got.is_empty() {
        churn.stop |= Instant::now() >= end;
        let any = side.turn(|b, out| churn.handle(b, out));
        driver.idle_until(any, end);
    }
    say(&format!(r#"{{"conns":{},"seconds":{}}}"#, churn.done, start.elapsed().as_secs_f64()));
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

fn chat_client(host: Ipv4Addr, port: u16, conns: usize, size: usize) {
    assert!(size >= 8, "a chat message holds its connection and sequence number");
    let driver = Driver::new();
    let mut side = driver.side();
    let connector = Connector::new(SocketAddr::from((host, port)), conns, true, &mut side.out);
    side.exchange.submit(side.out.drain(..));
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

/// The frames client against a server in another process (see [`Frames`]).
fn frames(port: u16, conns: usize, ms: u64) {
    let driver = Driver::new();
    let mut side = driver.side();
    let connector = Connector::new(loopback(port), conns, true, &mut side.out);
    side.exchange.submit(side.out.drain(..));
    let mut f = Frames { connector, seq: vec![0; conns], due: vec![Default::default(); conns], got: vec![Vec::new(); conns], frames: 0, bytes: 0, stop: false, busy: 0 };
    let start = Instant::now();
    let end = start + Duration::from_millis(ms);
    while !f.stop || f.busy > 0 {
        f.stop |= Instant::now() >= end;
        let any = side.turn(|b, out| f.handle(b, out));
        driver.idle_until(any, end);
    }
    say(&format!(r#"{{"frames":{},"bytes":{},"seconds":{}}}"#, f.frames, f.bytes, start.elapsed().as_secs_f64()));
}

/// A slow reader: one connection that reads nothing until a `read` line, then
/// reads (and checks) `bytes` bytes of the pattern and says how long it took.
fn sink(port: u16, bytes: usize) {
    let driver = Driver::new();
    let mut side = driver.side();
    let closed = Arc::new(AtomicBool::new(false));
    let go = Arc::new(AtomicBool::new(false));
    let told = go.clone();
    let wake = driver.wake.clone();
    watch_stdin(&driver, closed.clone(), move |line| {
        if line == "read" {
            told.store(true, Ordering::Release);
            let _ = wake.send(());
        }
    });
    let mut connector = Connector::new(loopback(port), 1, true, &mut side.out);
    side.exchange.submit(side.out.drain(..));
    let (mut got, mut reading, mut start) = (0, false, Instant::now());
    while got < bytes {
        if closed.load(Ordering::Acquire) {
            std::process::exit(0);
        }
        if !reading && go.load(Ordering::Acquire) {
            reading = true;
            start = Instant::now();
            side.out.push(read(1));
        }
        let any = side.turn(|b, out| {
            for c in &b.completions {
                match split(c.req) {
                    (conn, CONNECT) => {
                        connector.connected(conn, c, out);
                    }
                    (conn, READ) => {
                        if c.error.is_some() {
                            fail("sink read", c.error);
                        }
                        let data = b.bytes(c);
                        check(0, got, data);
                        got += data.len();
                        if got < bytes {
                            out.push(read(conn));
                        }
                    }
                    _ => {}
                }
            }
        });
        driver.idle(any);
    }
    assert_eq!(got, bytes, "more bytes than pushed");
    say(&format!(r#"{{"received":{got},"seconds":{}}}"#, start.elapsed().as_secs_f64()));
    while !closed.load(Ordering::Acquire) {
        driver.idle(false);
    }
    std::process::exit(0);
}

/// Holds `conns` connections until stdin closes. The harness feeds the
/// server's accept count as `accepted N` lines, so at most CONNECTING are
/// started and not yet accepted, as in the in-process workloads (a server
/// that accepts slowly would otherwise overflow its listen queue).
fn hold(port: u16, conns: usize, expect: Option<usize>) {
    let driver = Driver::new();
    let mut side = driver.side();
    let mut connector = Connector::new(loopback(port), conns, false, &mut side.out);
    side.exchange.submit(side.out.drain(..));
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
    // With --expect: bytes each connection got (every message is payload(0, size)), and rounds every connection finished.
    let mut got = vec![0usize; conns];
    let (mut total, mut rounds) = (0, 0);
    while !closed.load(Ordering::Acquire) {
        let accepted = accepted.load(Ordering::Acquire) as usize;
        let any = side.turn(|b, out| {
            for c in &b.completions {
                match (split(c.req), expect) {
                    ((conn, CONNECT), _) => {
                        connector.connected(conn, c, out);
                        if expect.is_some() {
                            out.push(read(conn));
                        }
                    }
                    ((conn, READ), Some(size)) => {
                        if c.error.is_some() {
                            fail("hold read", c.error);
                        }
                        let k = connector.k(conn);
                        for (i, &byte) in b.bytes(c).iter().enumerate() {
                            assert_eq!(byte, pattern_byte(0, (got[k] + i) % size), "connection {k}: byte {} differs", got[k] + i);
                        }
                        got[k] += c.size;
                        total += c.size;
                        out.push(read(conn));
                    }
                    _ => {}
                }
            }
            connector.pump(accepted, out);
        });
        if !ready && connector.connected == conns {
            ready = true;
            say(&format!(r#"{{"connected":{conns}}}"#));
        }
        if let Some(size) = expect {
            while total >= (rounds + 1) * conns * size {
                rounds += 1;
                say(&format!(r#"{{"round":{rounds}}}"#));
            }
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
        Some("serve") => serve(match flag("--proto") {
            Some("http") => Proto::Http,
            Some("frame") => Proto::Frame,
            _ => Proto::Echo,
        }),
        Some("chat-client") => chat_client(
            flag("--host").map_or(Ipv4Addr::LOCALHOST, |a| a.parse().expect("--host needs an IPv4 address")),
            number("--port") as u16,
            number("--conns"),
            number("--size"),
        ),
        Some("hold") => hold(number("--port") as u16, number("--conns"), flag("--expect").map(|_| number("--expect"))),
        Some("sink") => sink(number("--port") as u16, number("--bytes")),
        Some("frames") => frames(number("--port") as u16, number("--conns"), number("--ms") as u64),
        Some("burst-client") => burst_client(number("--port") as u16, number("--conns"), number("--size"), number("--passes")),
        Some("echo-client") => say(&echo_client(number("--port") as u16, number("--size"), number("--ms") as u64)),
        Some("latency") => latency(
            number("--port") as u16,
            flag("--proto") == Some("http"),
            number("--conns"),
            number("--rate") as f64,
            number("--warm-ms") as u64,
            number("--ms") as u64,
            number("--size"),
        ),
        Some("churn") => churn(number("--port") as u16, number("--conns"), number("--ms") as u64, number("--size")),
        _ => {
            eprintln!("usage: ceiling echo|burst|serve|chat-client|hold|burst-client|echo-client|latency|churn|sink|frames [flags]; see the top of examples/ceiling.rs");
            std::process::exit(2);
        }
    }
}
