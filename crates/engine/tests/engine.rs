//! The engine driven from plain Rust, against std sockets as peers.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gaio_engine::{Address, Completion, ConnId, Data, Error, Exchange, InlinePoller, Options, PollerThread, ReqId, Submission};

/// A watcher plus a blocking wait for its notifications.
struct Harness {
    watcher: Exchange,
    poller: PollerThread,
    notified: mpsc::Receiver<()>,
    /// Completions taken while waiting for another one.
    early: Vec<Done>,
}

/// A completion with its bytes copied out of the batch.
#[derive(Debug)]
struct Done {
    req: ReqId,
    size: usize,
    error: Option<Error>,
    bytes: Vec<u8>,
    swapped: bool,
}

impl Harness {
    fn new(options: Options) -> Harness {
        let (tx, notified) = mpsc::channel();
        let (watcher, poller) = PollerThread::start(&options, None, move || {
            let _ = tx.send(());
        })
        .expect("watcher starts");
        Harness { watcher, poller, notified, early: Vec::new() }
    }

    fn submit(&self, s: Submission) {
        self.watcher.submit([s]);
    }

    /// Takes the next non-empty batch, waiting up to 5 s, and copies it out.
    /// Taking first, and waiting only when that finds nothing, is the
    /// protocol: each take also releases the previous batch's swap space.
    fn wait(&mut self) -> Vec<Done> {
        let mut batch = self.watcher.take();
        while batch.completions.is_empty() {
            drop(batch);
            self.notified.recv_timeout(Duration::from_secs(5)).expect("a batch within 5 s");
            batch = self.watcher.take();
        }
        batch
            .completions
            .iter()
            .map(|c: &Completion| Done {
                req: c.req,
                size: c.size,
                error: c.error,
                bytes: batch.bytes(c).to_vec(),
                swapped: matches!(c.data, Data::Swap { .. }),
            })
            .collect()
    }

    /// Waits until request `req` completes, keeping the others for later.
    fn wait_for(&mut self, req: ReqId) -> Done {
        loop {
            if let Some(i) = self.early.iter().position(|d| d.req == req) {
                return self.early.remove(i);
            }
            let batch = self.wait();
            self.early.extend(batch);
        }
    }

    /// Listens on loopback as connection `id`; returns the address.
    fn listen(&self, id: ConnId) -> SocketAddr {
        let port = self.watcher.listen(id, &Address::Inet("127.0.0.1:0".parse().unwrap()), 128, false).unwrap();
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A connected pair: a std client and the accepted side as connection `id`.
    fn accept_one(&mut self, listener: ConnId, id: ConnId) -> TcpStream {
        let addr = self.listen(listener);
        self.submit(Submission::Accept { req: 9000, listener, conn: id });
        let client = TcpStream::connect(addr).unwrap();
        let done = self.wait_for(9000);
        assert_eq!(done.error, None);
        client
    }
}

fn read(req: ReqId, conn: ConnId, len: usize) -> Submission {
    Submission::Read { req, conn, len, full: false, deadline: None }
}

fn write(req: ReqId, conn: ConnId, data: &[u8]) -> Submission {
    Submission::Write { req, conn, data: data.to_vec(), deadline: None }
}

#[test]
fn echoes_through_swap_reads_and_writes() {
    let mut h = Harness::new(Options::default());
    let mut client = h.accept_one(1, 2);
    client.write_all(b"hello").unwrap();
    h.submit(read(1, 2, 1024));
    let got = h.wait_for(1);
    assert_eq!((got.error, got.size, &got.bytes[..], got.swapped), (None, 5, &b"hello"[..], true));
    h.submit(write(2, 2, &got.bytes));
    assert_eq!(h.wait_for(2).size, 5);
    let mut back = [0u8; 5];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
}

#[test]
fn read_full_waits_for_every_byte() {
    let mut h = Harness::new(Options::default());
    let mut client = h.accept_one(1, 2);
    h.submit(Submission::Read { req: 1, conn: 2, len: 300, full: true, deadline: None });
    for chunk in [[1u8; 100], [2u8; 100], [3u8; 100]] {
        client.write_all(&chunk).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = h.wait_for(1);
    assert_eq!((got.error, got.size), (None, 300));
    assert_eq!(&got.bytes[..100], &[1u8; 100]);
    assert_eq!(&got.bytes[200..], &[3u8; 100]);
}

#[test]
fn a_deadline_ends_a_read_that_gets_nothing() {
    let mut h = Harness::new(Options::default());
    let _client = h.accept_one(1, 2);
    let start = Instant::now();
    let deadline = Some(start + Duration::from_millis(50));
    h.submit(Submission::Read { req: 1, conn: 2, len: 10, full: true, deadline });
    let got = h.wait_for(1);
    assert_eq!(got.error, Some(Error::Deadline));
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[test]
fn end_of_stream_completes_reads_with_eof() {
    let mut h = Harness::new(Options::default());
    let client = h.accept_one(1, 2);
    drop(client);
    h.submit(read(1, 2, 64));
    h.submit(read(2, 2, 64));
    assert_eq!(h.wait_for(1).error, Some(Error::Eof));
    assert_eq!(h.wait_for(2).error, Some(Error::Eof));
}

#[test]
fn free_completes_pending_requests_and_closes_the_socket() {
    let mut h = Harness::new(Options::default());
    let mut client = h.accept_one(1, 2);
    h.submit(read(1, 2, 64));
    h.submit(Submission::Free { conn: 2 });
    assert_eq!(h.wait_for(1).error, Some(Error::ConnClosed));
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).unwrap(), 0, "the peer sees end of stream");
    h.submit(read(2, 2, 64));
    assert_eq!(h.wait_for(2).error, Some(Error::ConnClosed), "the id is gone");
}

#[test]
fn a_reused_slot_does_not_answer_to_its_old_generation() {
    let mut h = Harness::new(Options::default());
    let _client = h.accept_one(1, 2);
    let stale = 2 + (1 << gaio_engine::SLOT_BITS);
    h.submit(read(1, stale, 64));
    assert_eq!(h.wait_for(1).error, Some(Error::ConnClosed));
}

#[test]
fn close_completes_everything_and_later_submissions_fail_at_once() {
    let mut h = Harness::new(Options::default());
    let _client = h.accept_one(1, 2);
    h.submit(read(1, 2, 64));
    h.submit(Submission::Accept { req: 2, listener: 1, conn: 3 });
    h.poller.close();
    let mut errors: Vec<_> = h.watcher.take().completions.iter().map(|c| (c.req, c.error)).collect();
    errors.sort_by_key(|e| e.0);
    assert_eq!(errors, vec![(1, Some(Error::WatcherClosed)), (2, Some(Error::WatcherClosed))]);
    h.submit(read(3, 2, 64));
    assert_eq!(h.wait_for(3).error, Some(Error::WatcherClosed));
}

#[test]
fn a_closed_watcher_makes_no_listener_and_adopts_no_socket() {
    let (exchange, mut poller) = PollerThread::start(&Options::default(), None, || {}).unwrap();
    poller.close();
    let path = std::env::temp_dir().join(format!("gaio-engine-closed-{}.sock", std::process::id()));
    let refused = exchange.listen(1, &Address::Unix(path.clone()), 16, false).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::NotConnected);
    assert!(!path.exists(), "no socket file is left behind");
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let refused = exchange.adopt(2, std::os::fd::AsFd::as_fd(&a)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::NotConnected);
}

#[test]
fn a_socket_the_poll_cannot_take_is_refused_at_adoption_not_closed_unseen() {
    // epoll takes no regular file (EPERM), as it may take no more sockets at
    // max_user_watches: the caller must hear so at once, or it would go on
    // writing to a descriptor number the poller closed and someone reused.
    let (mut w, mut poller) = InlinePoller::start(&Options::default(), || {}).unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    let refused = w.adopt(1, file.as_fd()).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EPERM));
    let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
    w.adopt(1, ours.as_fd()).unwrap();
    peer.write_all(b"fine").unwrap();
    w.submit([read(1, 1, 16)]);
    assert_eq!(turn_until(&mut w, &mut poller, 1), None);
}

#[test]
fn a_connection_that_comes_before_the_poller_places_its_listener_is_accepted() {
    // The listener is registered on the caller's thread: its first edge can
    // come, and be dropped, before the poller has it in a slot.
    let (mut w, mut poller) = InlinePoller::start(&Options::default(), || {}).unwrap();
    let port = w.listen(1, &Address::Inet("127.0.0.1:0".parse().unwrap()), 16, false).unwrap();
    let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    poller.turn(); // the edge, for a slot still empty; then the listener is placed
    w.submit([Submission::Accept { req: 1, listener: 1, conn: 2 }]);
    assert_eq!(turn_until(&mut w, &mut poller, 1), None);
}

#[test]
fn takes_reuse_the_vectors_of_earlier_batches() {
    let (mut w, mut poller) = InlinePoller::start(&Options::default(), || {}).unwrap();
    // Reads on no connection complete in the next turn; the vectors' capacities tell them apart.
    let mut take_after = |reads: u32| {
        w.submit((0..reads).map(|req| read(req, 99, 64)));
        poller.advance();
        let batch = w.take();
        assert_eq!(batch.completions.len(), reads as usize);
        batch.completions.capacity()
    };
    assert!(take_after(32) >= 32);
    take_after(1);
    // Two vectors take turns, one with the consumer and one with the poller:
    // the third take gets the first one back, room for 32 and all.
    assert!(take_after(1) >= 32, "a fresh vector for every take");
}

#[test]
fn connect_reports_refusal_and_success() {
    let mut h = Harness::new(Options::default());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_addr = closed.local_addr().unwrap();
    drop(closed);
    h.submit(Submission::Connect { req: 1, conn: 5, addr: Address::Inet(refused_addr), deadline: None });
    assert_eq!(h.wait_for(1).error, Some(Error::Os(libc_econnrefused())));

    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    h.submit(Submission::Connect { req: 2, conn: 6, addr: Address::Inet(server.local_addr().unwrap()), deadline: None });
    let (mut peer, _) = server.accept().unwrap();
    assert_eq!(h.wait_for(2).error, None);
    h.submit(write(3, 6, b"ping"));
    assert_eq!(h.wait_for(3).size, 4);
    let mut buf = [0u8; 4];
    peer.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
}

fn libc_econnrefused() -> i32 {
    std::io::Error::from(std::io::ErrorKind::ConnectionRefused).raw_os_error().unwrap_or(111)
}

#[test]
fn large_writes_reach_a_slow_reader_intact() {
    let mut h = Harness::new(Options::default());
    let mut client = h.accept_one(1, 2);
    let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    h.submit(write(1, 2, &data[..1 << 20]));
    h.submit(write(2, 2, &data[1 << 20..]));
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; 4 << 20];
        client.read_exact(&mut got).unwrap();
        got
    });
    assert_eq!(h.wait_for(1).size, 1 << 20);
    assert_eq!(h.wait_for(2).size, 3 << 20);
    assert!(reader.join().unwrap() == data);
}

#[test]
fn a_write_of_nothing_fails_in_its_turn_behind_the_writes_before_it() {
    let mut h = Harness::new(Options::default());
    let mut client = h.accept_one(1, 2);
    // More than the socket takes at once: the first write waits for the reader.
    let data = vec![5u8; 8 << 20];
    h.submit(write(1, 2, &data));
    h.submit(write(2, 2, &[]));
    h.submit(write(3, 2, b"after"));
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; (8 << 20) + 5];
        client.read_exact(&mut got).unwrap();
        got
    });
    let mut order = Vec::new();
    while order.len() < 3 {
        order.extend(h.wait().into_iter().map(|d| (d.req, d.size, d.error)));
    }
    assert_eq!(order, [(1, 8 << 20, None), (2, 0, Some(Error::EmptyBuffer)), (3, 5, None)]);
    assert!(reader.join().unwrap().ends_with(b"after"));
}

#[test]
fn swap_reads_wait_for_space_instead_of_losing_bytes() {
    // Arenas of 4 KiB: a 64 KiB stream needs many rounds of take-and-refill.
    let mut h = Harness::new(Options { swap_read_size: 1024, arena_size: 4096 });
    let mut client = h.accept_one(1, 2);
    let data: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
    let sent = data.clone();
    // The writer hands the socket back so that end of stream does not race the reads.
    let writer = std::thread::spawn(move || {
        client.write_all(&sent).unwrap();
        client
    });
    let mut got = Vec::new();
    let mut next_req = 100;
    for req in 0..16 {
        h.submit(read(req, 2, 1024));
    }
    while got.len() < data.len() {
        for done in h.wait() {
            assert_eq!(done.error, None);
            got.extend_from_slice(&done.bytes);
            h.submit(read(next_req, 2, 1024));
            next_req += 1;
        }
    }
    assert!(got == data);
    drop(writer.join().unwrap());
}

#[cfg(target_os = "linux")]
#[test]
fn the_poller_can_be_pinned_to_a_cpu() {
    assert!(PollerThread::start(&Options::default(), Some(0), || {}).is_ok());
    assert!(PollerThread::start(&Options::default(), Some(100_000), || {}).is_err());
}

#[test]
fn an_inline_watcher_does_the_work_in_the_callers_turns() {
    let (mut w, mut poller) = InlinePoller::start(&Options::default(), || {}).unwrap();
    let port = w.listen(1, &Address::Inet("127.0.0.1:0".parse().unwrap()), 16, false).unwrap();
    w.submit([Submission::Accept { req: 1, listener: 1, conn: 2 }]);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(b"inline").unwrap();
    let mut echoed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while echoed.is_empty() {
        assert!(Instant::now() < deadline, "no echo within 5 s");
        assert!(poller.poll_fd().is_some());
        poller.turn();
        let batch = w.take();
        let mut next = Vec::new();
        for c in &batch.completions {
            match c.req {
                1 => next.push(read(2, 2, 64)),
                2 => next.push(write(3, 2, batch.bytes(c))),
                3 => echoed.push(c.size),
                _ => {}
            }
        }
        drop(batch);
        w.submit(next);
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut back = [0u8; 6];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"inline");
    poller.close();
    assert_eq!(poller.poll_fd(), None);
}

#[test]
fn a_stale_deadline_does_not_end_a_later_request_with_the_same_id() {
    // Request ids are the submitter's to reuse once a request completes. A
    // read with a deadline that completes early leaves its deadline entry
    // behind; a later read with the same id and no deadline must outlive it.
    let mut h = Harness::new(Options::default());
    let mut client = h.accept_one(1, 2);
    client.write_all(b"early").unwrap();
    let deadline = Some(Instant::now() + Duration::from_millis(50));
    h.submit(Submission::Read { req: 7, conn: 2, len: 64, full: false, deadline });
    assert_eq!(h.wait_for(7).error, None);
    h.submit(read(7, 2, 64)); // the same id, no deadline
    std::thread::sleep(Duration::from_millis(150));
    client.write_all(b"late").unwrap();
    let got = h.wait_for(7);
    assert_eq!((got.error, &got.bytes[..]), (None, &b"late"[..]));
}

/// An inline watcher's turns until request `req` completes (at most 100).
fn turn_until(w: &mut Exchange, poller: &mut InlinePoller, req: ReqId) -> Option<Error> {
    for _ in 0..100 {
        poller.turn();
        if let Some(c) = w.take().completions.iter().find(|c| c.req == req) {
            return c.error;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("request {req} did not complete in 100 turns");
}

#[test]
fn requests_that_beat_their_deadline_leave_no_timeout_behind() {
    // Issue 8c: a finished request's deadline must not wake the poller.
    let (mut w, mut poller) = InlinePoller::start(&Options::default(), || {}).unwrap();
    let (a, mut a_peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let (b, mut b_peer) = std::os::unix::net::UnixStream::pair().unwrap();
    w.adopt(1, a.as_fd()).unwrap();
    w.adopt(2, b.as_fd()).unwrap();
    let soon = Some(Instant::now() + Duration::from_millis(50));
    b_peer.write_all(b"now").unwrap();
    w.submit([Submission::Read { req: 1, conn: 2, len: 64, full: false, deadline: soon }]);
    assert_eq!(turn_until(&mut w, &mut poller, 1), None);
    w.submit([Submission::Write { req: 2, conn: 2, data: b"queued".to_vec(), deadline: soon }]);
    assert_eq!(turn_until(&mut w, &mut poller, 2), None);
    poller.write_now(3, 2, b"direct", soon);
    assert_eq!(turn_until(&mut w, &mut poller, 3), None);
    assert_eq!(poller.timeout(), None, "only finished requests had deadlines");

    // A far deadline still pending: the timeout is its, not a stale near one's.
    w.submit([Submission::Read { req: 4, conn: 1, len: 64, full: false, deadline: Some(Instant::now() + Duration::from_secs(60)) }]);
    b_peer.write_all(b"again").unwrap();
    w.submit([Submission::Read { req: 5, conn: 2, len: 64, full: false, deadline: soon }]);
    assert_eq!(turn_until(&mut w, &mut poller, 5), None);
    assert!(poller.timeout().is_some_and(|t| t > Duration::from_secs(50)), "timeout {:?}", poller.timeout());
    a_peer.write_all(b"late").unwrap();
    assert_eq!(turn_until(&mut w, &mut poller, 4), None);
    assert_eq!(poller.timeout(), None);
    let mut got = [0u8; 12];
    b_peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"queueddirect");
}

#[test]
fn reads_are_served_whether_bytes_come_before_or_after_them() {
    // A read on a drained socket is left for the edge that its bytes raise
    // (no wake-up); one on a socket whose bytes came first must wake the poller.
    let mut h = Harness::new(Options::default());
    let mut client = h.accept_one(1, 2);
    h.submit(read(1, 2, 64));
    client.write_all(b"a").unwrap();
    assert_eq!(h.wait_for(1).bytes, b"a");
    for (req, byte) in [(2, b'b'), (3, b'c'), (4, b'd')] {
        let bytes_first = req % 2 == 1;
        if bytes_first {
            client.write_all(&[byte]).unwrap();
        }
        // Long enough for the poller to note what came and go back to sleep.
        std::thread::sleep(Duration::from_millis(50));
        h.submit(read(req, 2, 64));
        if !bytes_first {
            std::thread::sleep(Duration::from_millis(20));
            client.write_all(&[byte]).unwrap();
        }
        let got = h.wait_for(req);
        assert_eq!((got.error, &got.bytes[..]), (None, &[byte][..]), "read {req}, bytes first: {bytes_first}");
    }
}

/// Three 8-byte reads against arenas of 8 bytes: the third waits until the
/// first arena is two takes old, and the second of those takes has nothing to
/// deliver. A consumer that takes only when told to must still be told.
#[test]
fn a_consumer_that_takes_only_when_notified_is_told_when_a_starved_read_needs_a_take() {
    let mut h = Harness::new(Options { swap_read_size: 8, arena_size: 8 });
    let mut client = h.accept_one(1, 2);
    client.write_all(&[7u8; 24]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    while h.notified.try_recv().is_ok() {}
    h.watcher.submit([read(1, 2, 8), read(2, 2, 8), read(3, 2, 8)]);
    let mut got = 0;
    while got < 24 {
        h.notified.recv_timeout(Duration::from_secs(5)).expect("a notification within 5 s");
        got += h.watcher.take().completions.iter().map(|c| c.size).sum::<usize>();
    }
}

#[test]
fn an_inline_turn_asks_for_the_take_that_a_starved_read_needs() {
    let (mut w, mut poller) = InlinePoller::start(&Options { swap_read_size: 8, arena_size: 8 }, || {}).unwrap();
    let (a, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
    w.adopt(1, a.as_fd()).unwrap();
    peer.write_all(&[7u8; 24]).unwrap();
    w.submit([read(1, 1, 8), read(2, 1, 8), read(3, 1, 8)]);
    let mut got = 0;
    for _ in 0..100 {
        if poller.turn() {
            got += w.take().completions.iter().map(|c| c.size).sum::<usize>();
        }
        if got == 24 {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("{got} of 24 bytes in 100 turns taking only when a turn asked");
}

#[test]
fn sockets_waiting_for_swap_space_are_served_in_turn() {
    // Arenas of one read each: A has 100 reads queued ahead of B's one, and
    // bytes for all of them. B must not wait for A's hundred.
    let (mut w, mut poller) = InlinePoller::start(&Options { swap_read_size: 8, arena_size: 8 }, || {}).unwrap();
    let (a, mut a_peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let (b, mut b_peer) = std::os::unix::net::UnixStream::pair().unwrap();
    w.adopt(1, a.as_fd()).unwrap();
    w.adopt(2, b.as_fd()).unwrap();
    a_peer.write_all(&[1u8; 800]).unwrap();
    b_peer.write_all(&[2u8; 8]).unwrap();
    w.submit((0..100).map(|req| read(req, 1, 8)).chain([read(100, 2, 8)]));
    let mut a_reads_before_b = 0;
    for _ in 0..300 {
        poller.turn();
        for c in &w.take().completions {
            if c.req == 100 {
                // A's first turn fills both arenas; from then on B is served first.
                assert!(a_reads_before_b <= 2, "B waited for {a_reads_before_b} of A's reads");
                return;
            }
            a_reads_before_b += 1;
        }
    }
    panic!("B's read never completed");
}

#[test]
fn requests_submitted_from_another_thread_during_close_each_complete_once() {
    for _ in 0..200 {
        let (exchange, mut poller) = PollerThread::start(&Options::default(), None, || {}).unwrap();
        let mut exchange = std::sync::Arc::new(exchange);
        let submitter = {
            let exchange = exchange.clone();
            std::thread::spawn(move || {
                for req in 0..2000 {
                    exchange.submit([read(req, 1, 64)]);
                }
            })
        };
        std::thread::sleep(Duration::from_micros(200));
        poller.close();
        submitter.join().unwrap();
        let exchange = std::sync::Arc::get_mut(&mut exchange).unwrap();
        let mut seen = vec![0u8; 2000];
        for c in &exchange.take().completions {
            seen[c.req as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n == 1), "{} of 2000 requests never completed", seen.iter().filter(|&&n| n == 0).count());
    }
}

/// A connection id: `slot` at generation `generation`.
fn conn_id(slot: u32, generation: u32) -> ConnId {
    slot | (generation << gaio_engine::SLOT_BITS)
}

#[test]
fn a_connect_freed_before_it_starts_fails_and_leaves_the_slot_to_its_next_holder() {
    // Connects start in the turn after they are applied (at most 128 a
    // turn), so a free can come while one waits; the connect must end there
    // instead of starting later and closing whoever holds the slot by then.
    let (mut w, mut poller) = InlinePoller::start(&Options::default(), || {}).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (first, next) = (conn_id(5, 1), conn_id(5, 2));
    w.submit([
        Submission::Connect { req: 1, conn: first, addr: Address::Inet(listener.local_addr().unwrap()), deadline: None },
        Submission::Free { conn: first },
    ]);
    let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
    w.adopt(next, ours.as_fd()).unwrap();
    w.submit([read(2, next, 16)]);
    assert_eq!(turn_until(&mut w, &mut poller, 1), Some(Error::ConnClosed));
    peer.write_all(b"still open").unwrap();
    assert_eq!(turn_until(&mut w, &mut poller, 2), None);
}

#[test]
fn a_half_close_after_a_write_that_expired_on_a_full_socket_completes_at_once() {
    // The expired write left the socket full and the queue empty: the
    // half-close has nothing to wait for, however long the peer does not read.
    let (mut w, mut poller) = InlinePoller::start(&Options::default(), || {}).unwrap();
    let (ours, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    w.adopt(1, ours.as_fd()).unwrap();
    let soon = Some(Instant::now() + Duration::from_millis(20));
    w.submit([Submission::Write { req: 1, conn: 1, data: vec![7; 16 << 20], deadline: soon }]);
    assert_eq!(turn_until(&mut w, &mut poller, 1), Some(Error::Deadline));
    w.submit([Submission::CloseWrite { req: 2, conn: 1 }]);
    assert_eq!(turn_until(&mut w, &mut poller, 2), None);
}

#[test]
fn a_read_full_longer_than_memory_allows_fails_the_read_not_the_poller() {
    let (mut w, mut poller) = InlinePoller::start(&Options::default(), || {}).unwrap();
    let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
    w.adopt(1, ours.as_fd()).unwrap();
    peer.write_all(b"x").unwrap();
    w.submit([Submission::Read { req: 1, conn: 1, len: usize::MAX, full: true, deadline: None }]);
    assert_eq!(turn_until(&mut w, &mut poller, 1), Some(Error::Os(libc::ENOMEM)));
    w.submit([read(2, 1, 16)]);
    assert_eq!(turn_until(&mut w, &mut poller, 2), None, "the byte is still there for the next read");
}

#[test]
fn a_connect_whose_deadline_passes_while_it_waits_its_turn_makes_no_connection() {
    // At most 128 connects start per turn. One still waiting when its deadline
    // passes fails there, without a socket, rather than connecting only to expire.
    use std::os::fd::AsRawFd;
    let (mut w, mut poller) = InlinePoller::start(&Options::default(), || {}).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: a listening socket's descriptor; listening again only sets its backlog,
    // made room for every connect here, so each one started arrives.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 4096) }, 0);
    listener.set_nonblocking(true).unwrap();
    let addr = Address::Inet(listener.local_addr().unwrap());
    let deadline = Some(Instant::now() + Duration::from_millis(30));
    let count = 300;
    w.submit((0..count).map(|i| Submission::Connect { req: i, conn: conn_id(i + 1, 1), addr: addr.clone(), deadline }));
    poller.turn();
    std::thread::sleep(Duration::from_millis(60));
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        poller.turn();
        outcomes.extend(w.take().completions.iter().map(|c| c.error));
        if outcomes.len() == count as usize {
            break;
        }
    }
    assert_eq!(outcomes.len(), count as usize, "every connect completes");
    let expired = outcomes.iter().filter(|e| **e == Some(Error::Deadline)).count();
    assert!(expired >= count as usize - 128, "only {expired} expired");
    let arrived = std::iter::from_fn(|| listener.accept().ok()).count();
    assert!(arrived <= 128, "{arrived} connections arrived: only the first turn's 128 started in time");
}

#[test]
fn an_inline_turn_that_panics_stops_the_watcher_and_the_consumer_hears_of_it() {
    // As with a poller thread: the panic is caught, recorded for the next
    // take, and the poller is not run again; requests complete as closed.
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trigger = armed.clone();
    let notify = move || assert!(!trigger.swap(false, std::sync::atomic::Ordering::Relaxed), "deliberate panic at publication");
    let (mut w, mut poller) = InlinePoller::start(&Options::default(), notify).unwrap();
    let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
    w.adopt(1, ours.as_fd()).unwrap();
    drop(ours); // the watcher holds a duplicate
    w.submit([read(1, 1, 16)]);
    assert!(!poller.turn(), "nothing to take yet");
    armed.store(true, std::sync::atomic::Ordering::Relaxed);
    peer.write_all(b"x").unwrap();
    assert!(poller.turn(), "the consumer is asked to take");
    assert!(w.failure().is_some_and(|m| m.contains("deliberate panic")), "{:?}", w.failure());
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(peer.read(&mut [0; 16]).unwrap(), 0, "its sockets are shut down: the peer reads end of stream");
    assert!(poller.turn(), "the consumer is still asked to take");
    let mut ready = libc::pollfd { fd: poller.poll_fd().unwrap(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, and the descriptor is open.
    assert_eq!(unsafe { libc::poll(&mut ready, 1, 0) }, 0, "the poll descriptor does not stay ready: a loop watching it would spin");
    poller.apply_now(read(2, 1, 16));
    assert!(poller.turn());
    let errors: Vec<_> = w.take().completions.iter().map(|c| (c.req, c.error)).collect();
    assert!(errors.contains(&(2, Some(Error::WatcherClosed))), "{errors:?}");
    poller.close();
}
