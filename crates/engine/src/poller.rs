//! The poller: readiness in, requests advanced, completions out.
//!
//! Each turn: wait for events (or the next deadline), note readiness, take the
//! whole submission queue under one lock, pump the sockets that can move,
//! expire deadlines, then publish the turn's completions under one lock and
//! notify the consumer only if it has not been notified since its last take.
//! Sockets are registered once for both directions, edge-triggered, and never
//! re-armed.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::arena::SwapArenas;
use crate::conn::{AcceptRequest, Conn, Role, Listening, ReadProgress};
use crate::deadline::{Deadlines, Key};
use crate::exchange::Shared;
use crate::op::{slot_of, Adoption, Completion, ConnId, Data, Error, ReqId, Submission};
use crate::sys;

pub(crate) const WAKER: Token = Token(usize::MAX);

/// Connects started per turn. On loopback a connect completes the handshake
/// inside the call, so thousands in one turn would fill the listener's backlog
/// before this same thread accepts any, and the kernel drops the rest of the
/// SYNs for a one-second retransmit. Spreading them over turns lets accepts
/// keep up.
const CONNECTS_PER_TURN: usize = 128;

/// After an accept fails for want of descriptors or memory (EMFILE and the
/// like), the listener is tried again after a pause that doubles up to a
/// second, as Go's servers do, or at once when this watcher frees a socket.
/// The connection waits in the backlog meanwhile; nothing else would wake the
/// listener, since its readiness edge has already been consumed.
const ACCEPT_RETRY_FIRST: Duration = Duration::from_millis(5);
const ACCEPT_RETRY_MAX: Duration = Duration::from_secs(1);

pub(crate) struct Poller {
    poll: Poll,
    events: Events,
    shared: Arc<Shared>,
    conns: Vec<Option<Conn>>,
    /// Slots to pump this turn; `next_ready` is reused to avoid allocation.
    ready: Vec<usize>,
    next_ready: Vec<usize>,
    /// Sockets whose swap reads wait for arena space: pumped first next turn.
    starved: Vec<usize>,
    /// Starved sockets that got space this turn: they queue behind the rest,
    /// so one busy socket cannot take every freed byte (round robin).
    served_then_starved: Vec<usize>,
    deadlines: Deadlines,
    arenas: SwapArenas,
    swap_max: usize,
    done: Vec<Completion>,
    incoming: Vec<Submission>,
    /// Connect requests waiting for their turn.
    connects: VecDeque<Submission>,
    /// Listeners whose accept ran out of resources, retried at `accept_retry_at`.
    accept_retry: Vec<usize>,
    accept_retry_at: Option<Instant>,
}

impl Poller {
    pub fn new(poll: Poll, shared: Arc<Shared>, arenas: SwapArenas, swap_max: usize) -> Poller {
        Poller {
            poll,
            events: Events::with_capacity(1024),
            shared,
            conns: Vec::new(),
            ready: Vec::new(),
            next_ready: Vec::new(),
            starved: Vec::new(),
            served_then_starved: Vec::new(),
            deadlines: Deadlines::default(),
            arenas,
            swap_max,
            done: Vec::new(),
            incoming: Vec::new(),
            connects: VecDeque::new(),
            accept_retry: Vec::new(),
            accept_retry_at: None,
        }
    }

    /// Runs until the watcher closes. A panic is recorded for the consumer
    /// instead of silently killing the thread; the sockets are shut down
    /// then, and closed only once the consumer closes the watcher (see
    /// [`Poller::shut_down_sockets`]).
    pub fn run_guarded(mut self) {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run())) {
            Ok(()) => self.shut_down(),
            Err(panic) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.shut_down_sockets()));
                self.shared.record_panic(panic);
                self.wait_for_close();
            }
        }
    }

    /// What a failed poller thread does until its consumer closes the watcher:
    /// nothing but wait for the wake-up that close sends.
    fn wait_for_close(&mut self) {
        while !self.shared.lock().closing {
            if !self.discard_readiness(None) {
                return;
            }
        }
    }

    /// Waits up to `timeout` for readiness and does nothing with it: what a
    /// failed poller does, so that its poll descriptor (edge-triggered sockets
    /// behind it) stops reporting ready to whoever watches it. False if the
    /// poll itself failed.
    pub fn discard_readiness(&mut self, timeout: Option<Duration>) -> bool {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::Interrupted,
        }
    }

    fn run(&mut self) {
        loop {
            // Announce the sleep, then look: a submitter that queued before
            // the announcement is seen here; one after it sees `sleeping`.
            self.shared.sleeping.store(true, Ordering::SeqCst);
            let idle = self.shared.lock().submissions.is_empty();
            self.wait(if idle { self.timeout() } else { Some(Duration::ZERO) });
            self.shared.sleeping.store(false, Ordering::SeqCst);
            if !self.advance() {
                return;
            }
        }
    }

    /// How long a turn may wait for readiness: until the next deadline or
    /// accept retry, or not at all while connects wait for their turn.
    pub fn timeout(&self) -> Option<Duration> {
        if !self.connects.is_empty() {
            return Some(Duration::ZERO);
        }
        if self.deadlines.is_empty() && self.accept_retry_at.is_none() {
            return None; // no clock read: this runs once per turn
        }
        let now = Instant::now();
        let retry = self.accept_retry_at.map(|at| at.saturating_duration_since(now));
        match (self.deadlines.timeout(now), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One round: wait up to `timeout` for readiness, then [`Poller::advance`].
    pub fn turn(&mut self, timeout: Option<Duration>) -> bool {
        self.wait(timeout);
        self.advance()
    }

    /// Waits up to `timeout` for readiness and notes it.
    fn wait(&mut self, timeout: Option<Duration>) {
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            assert!(e.kind() == std::io::ErrorKind::Interrupted, "poll failed: {e}");
        }
        for event in self.events.iter() {
            self.shared.armed.disarm(event.token().0);
            note_readiness(&mut self.conns, &mut self.ready, event);
        }
    }

    /// Takes the submissions, advances every socket that can move, expires
    /// deadlines and publishes, without asking the kernel for readiness (an
    /// inline consumer does this right after submitting: new readiness wakes
    /// it through the poll descriptor anyway). Returns false, having done
    /// nothing, once the watcher is closing.
    pub fn advance(&mut self) -> bool {
        if !self.apply_queued() {
            return false;
        }
        let now = Instant::now();
        for _ in 0..CONNECTS_PER_TURN.min(self.connects.len()) {
            let Some(Submission::Connect { req, conn, addr, deadline }) = self.connects.pop_front() else { unreachable!() };
            // Its deadline passed while it waited its turn: no connection, only to expire it.
            if deadline.is_some_and(|at| at <= now) {
                self.done.push(Completion::failed(req, Error::Deadline));
                continue;
            }
            match sys::connect(&addr).and_then(|fd| self.insert(conn, fd, Role::Connecting { req, deadline: None })) {
                // The deadline only for a connect under way: a failed start has nothing to expire.
                Ok(()) => {
                    if let (Some(at), Some(Conn { role: Role::Connecting { deadline: key, .. }, .. })) = (deadline, conn_mut(&mut self.conns, conn)) {
                        *key = Some(self.deadlines.add(at, conn));
                    }
                }
                Err(e) => self.done.push(Completion::failed(req, e.into())),
            }
        }
        self.put_starved_first();
        if self.accept_retry_at.is_some_and(|at| at <= Instant::now()) {
            self.retry_accepts();
        }
        let takes = self.shared.takes.load(Ordering::Acquire);
        self.pump(takes);
        if !self.deadlines.is_empty() {
            self.expire(Instant::now());
        }
        self.publish(takes);
        true
    }

    /// Reorders this turn's sockets so that the starved come first, in their
    /// order, ahead of those with fresh readiness or requests: a busy socket
    /// gets a new edge every turn, and would otherwise take all the space
    /// that a take freed, every time.
    fn put_starved_first(&mut self) {
        if self.starved.is_empty() {
            return;
        }
        let fresh = std::mem::take(&mut self.ready);
        for &slot in &fresh {
            if let Some(Some(conn)) = self.conns.get_mut(slot) {
                conn.queued = false;
            }
        }
        for slot in std::mem::take(&mut self.starved) {
            self.schedule(slot);
        }
        for slot in fresh {
            self.schedule(slot);
        }
    }

    /// Applies the queued submissions; false, leaving them for `shut_down`,
    /// once the watcher is closing.
    fn apply_queued(&mut self) -> bool {
        let closing = {
            let mut state = self.shared.lock();
            std::mem::swap(&mut state.submissions, &mut self.incoming);
            state.wake_sent = false;
            state.closing
        };
        if closing {
            return false;
        }
        let mut incoming = std::mem::take(&mut self.incoming);
        for submission in incoming.drain(..) {
            self.apply(submission);
        }
        self.incoming = incoming;
        true
    }

    /// Applies one submission now, after those already queued: how an inline
    /// consumer submits, on the poller's own thread.
    pub fn apply_now(&mut self, submission: Submission) {
        if self.apply_queued() {
            self.apply(submission);
        } else {
            self.incoming.push(submission);
        }
    }

    /// An inline consumer's write: sent straight from `data` when the
    /// connection has nothing queued ahead of it (no copy), else queued.
    pub fn write_now(&mut self, req: ReqId, conn: ConnId, data: &[u8], deadline: Option<Instant>) {
        if !self.apply_queued() {
            return self.apply_now(Submission::Write { req, conn, data: data.to_vec(), deadline });
        }
        match stream_mut(&mut self.conns, conn) {
            Ok(stream) => match stream.write_now(req, data, deadline, &mut self.deadlines) {
                Some(completion) => self.done.push(completion),
                None => self.schedule(slot_of(conn)),
            },
            Err(e) => self.done.push(Completion::failed(req, e)),
        }
    }

    /// The descriptor that turns readable when a turn has work (epoll or kqueue).
    pub fn poll_fd(&self) -> std::os::fd::RawFd {
        self.poll.as_raw_fd()
    }

    fn schedule(&mut self, slot: usize) {
        schedule(&mut self.conns, &mut self.ready, slot);
    }

    /// Queues a request on stream `conn` with `push`, or fails it if there is no such stream.
    fn queue_on_stream(&mut self, req: ReqId, conn: ConnId, push: impl FnOnce(&mut Conn, &mut Deadlines)) {
        match stream_mut(&mut self.conns, conn) {
            Ok(stream) => {
                push(stream, &mut self.deadlines);
                self.schedule(slot_of(conn));
            }
            Err(e) => self.done.push(Completion::failed(req, e)),
        }
    }

    fn apply(&mut self, submission: Submission) {
        if submission.is_empty_read() {
            let req = submission.req().expect("reads are requests");
            return self.done.push(Completion::failed(req, Error::EmptyBuffer));
        }
        match submission {
            Submission::Read { req, conn, len, full, deadline } => {
                self.queue_on_stream(req, conn, |stream, deadlines| stream.push_read(req, len, full, deadline, deadlines))
            }
            Submission::Write { req, conn, data, deadline } => {
                self.queue_on_stream(req, conn, |stream, deadlines| stream.push_write(req, data, deadline, deadlines))
            }
            Submission::CloseWrite { req, conn } => self.queue_on_stream(req, conn, |stream, _| stream.push_close_write(req)),
            Submission::Accept { req, listener, conn } => match conn_mut(&mut self.conns, listener).map(|l| &mut l.role) {
                Some(Role::Listener(listening)) => {
                    listening.accepts.push_back(AcceptRequest { req, conn });
                    self.schedule(slot_of(listener));
                }
                Some(_) => self.done.push(Completion::failed(req, Error::WrongRole)),
                None => self.done.push(Completion::failed(req, Error::ConnClosed)),
            },
            connect @ Submission::Connect { .. } => self.connects.push_back(connect),
            Submission::Adopt(Adoption { conn, fd, listener }) => {
                let role = match listener {
                    true => Role::Listener(Box::new(Listening { accepts: VecDeque::new(), backoff: Duration::ZERO })),
                    false => Role::Stream,
                };
                self.place(conn, fd, role);
            }
            Submission::Free { conn } => self.free(conn, Error::ConnClosed),
            Submission::Reject { req, error } => self.done.push(Completion::failed(req, error)),
        }
    }

    /// Registers a socket of the poller's own (accepted or connecting) and places it.
    fn insert(&mut self, id: ConnId, fd: OwnedFd, role: Role) -> std::io::Result<()> {
        self.poll.registry().register(
            &mut SourceFd(&fd.as_raw_fd()),
            Token(slot_of(id)),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.place(id, fd, role);
        Ok(())
    }

    /// Puts a registered socket in its slot.
    fn place(&mut self, id: ConnId, fd: OwnedFd, role: Role) {
        let slot = slot_of(id);
        if self.conns.len() <= slot {
            self.conns.resize_with(slot + 1, || None);
        }
        if let Some(old) = self.conns[slot].take() {
            // The submitter reused a slot it never freed: close the old socket properly.
            self.close_conn(old, Error::ConnClosed);
        }
        self.conns[slot] = Some(Conn::new(id, fd, role));
        self.shared.armed.disarm(slot);
        self.schedule(slot);
    }

    fn free(&mut self, id: ConnId, error: Error) {
        // A connect still waiting for its turn has no socket yet: it ends here,
        // or it would start later and take the slot from whoever holds it then.
        if let Some(at) = self.connects.iter().position(|c| matches!(c, Submission::Connect { conn, .. } if *conn == id)) {
            if let Some(Submission::Connect { req, .. }) = self.connects.remove(at) {
                self.done.push(Completion::failed(req, error));
            }
            return;
        }
        if let Some(conn) = self.conns.get_mut(slot_of(id)).and_then(|c| c.take_if(|c| c.id == id)) {
            self.close_conn(conn, error);
            // A descriptor is free now: what the listeners could not accept may fit.
            self.retry_accepts();
        }
    }

    fn retry_accepts(&mut self) {
        self.accept_retry_at = None;
        for slot in std::mem::take(&mut self.accept_retry) {
            self.schedule(slot);
        }
    }

    fn close_conn(&mut self, mut conn: Conn, error: Error) {
        self.shared.armed.disarm(slot_of(conn.id));
        // Deregister before closing: a duplicate of the descriptor elsewhere
        // would otherwise keep it in the poll set.
        let _ = self.poll.registry().deregister(&mut SourceFd(&conn.fd.as_raw_fd()));
        conn.fail_all(error, &mut self.done, &mut self.deadlines);
    }

    fn pump(&mut self, takes: u64) {
        let mut ready = std::mem::replace(&mut self.ready, std::mem::take(&mut self.next_ready));
        for &slot in &ready {
            let Some(Some(conn)) = self.conns.get_mut(slot) else { continue };
            conn.queued = false;
            match conn.role {
                Role::Stream => {
                    conn.pump_writes(&mut self.done, &mut self.deadlines);
                    let done_before = self.done.len();
                    let progress = conn.pump_reads(&mut self.arenas, takes, self.swap_max, &mut self.done, &mut self.deadlines);
                    if progress == ReadProgress::Starved {
                        let served = self.done.len() > done_before;
                        if served { &mut self.served_then_starved } else { &mut self.starved }.push(slot);
                    }
                    if !conn.readable && !conn.hup {
                        self.shared.armed.arm(conn.id);
                    }
                }
                Role::Listener(_) => self.pump_accepts(slot),
                Role::Connecting { req, deadline } if conn.writable || conn.hup => self.finish_connect(slot, req, deadline),
                Role::Connecting { .. } => {}
            }
        }
        ready.clear();
        self.next_ready = ready;
        self.starved.append(&mut self.served_then_starved);
    }

    fn pump_accepts(&mut self, slot: usize) {
        let mut accepted = Vec::new();
        let Some(Some(listener)) = self.conns.get_mut(slot) else { return };
        let Role::Listener(listening) = &mut listener.role else { return };
        while listener.readable && !listening.accepts.is_empty() {
            match sys::accept(listener.fd.as_fd()) {
                Ok(fd) => {
                    accepted.push((listening.accepts.pop_front().expect("not empty"), fd));
                    listening.backoff = Duration::ZERO;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // An empty backlog: whatever shortage there was is over.
                    listener.readable = false;
                    listening.backoff = Duration::ZERO;
                }
                // That connection is gone; the next in the backlog may be fine.
                Err(e) if sys::accept_error_is_transient(&e) => {}
                Err(e) => {
                    // EMFILE and friends: the connection stays in the backlog for
                    // the retry. The first failure of a shortage is reported, to
                    // one request; the retries that fail while it lasts are not,
                    // or a short shortage would fail every pending accept.
                    if listening.backoff.is_zero() {
                        let failed = listening.accepts.pop_front().expect("not empty");
                        self.done.push(Completion::failed(failed.req, e.into()));
                    }
                    listening.backoff = (listening.backoff * 2).clamp(ACCEPT_RETRY_FIRST, ACCEPT_RETRY_MAX);
                    let at = Instant::now() + listening.backoff;
                    self.accept_retry_at = Some(self.accept_retry_at.map_or(at, |earlier| earlier.min(at)));
                    if !self.accept_retry.contains(&slot) {
                        self.accept_retry.push(slot);
                    }
                    break;
                }
            }
        }
        for (request, fd) in accepted {
            let outcome = self.insert(request.conn, fd, Role::Stream);
            self.done.push(match outcome {
                Ok(()) => Completion { req: request.req, size: 0, error: None, data: self.socket_of(request.conn) },
                Err(e) => Completion::failed(request.req, e.into()),
            });
        }
    }

    fn finish_connect(&mut self, slot: usize, req: u32, deadline: Option<Key>) {
        if let Some(key) = deadline {
            self.deadlines.remove(key);
        }
        let conn = self.conns[slot].as_mut().expect("pumped slots hold a connection");
        match sys::take_socket_error(conn.fd.as_fd()) {
            Ok(None) => {
                conn.role = Role::Stream;
                let socket = Data::Socket(conn.fd.as_raw_fd());
                self.done.push(Completion { req, size: 0, error: None, data: socket });
            }
            Ok(Some(e)) | Err(e) => self.abandon_connect(slot, req, e.into()),
        }
    }

    /// Closes a connect's socket and fails its request.
    fn abandon_connect(&mut self, slot: usize, req: u32, error: Error) {
        let mut conn = self.conns[slot].take().expect("a connecting slot holds a connection");
        conn.role = Role::Stream;
        let _ = self.poll.registry().deregister(&mut SourceFd(&conn.fd.as_raw_fd()));
        self.done.push(Completion::failed(req, error));
    }

    fn socket_of(&self, id: ConnId) -> Data {
        match self.conns.get(slot_of(id)) {
            Some(Some(conn)) if conn.id == id => Data::Socket(conn.fd.as_raw_fd()),
            _ => Data::None,
        }
    }

    /// Ends the requests whose deadlines passed. Every entry popped is live:
    /// requests that finished first took theirs out.
    fn expire(&mut self, now: Instant) {
        while let Some((conn, key)) = self.deadlines.pop_due(now) {
            if let Some(Conn { role: Role::Connecting { req, deadline: Some(due) }, .. }) = conn_mut(&mut self.conns, conn) {
                if *due == key {
                    let req = *req;
                    self.abandon_connect(slot_of(conn), req, Error::Deadline);
                    continue;
                }
            }
            if let Some(completion) = conn_mut(&mut self.conns, conn).and_then(|c| c.expire(key, &mut self.deadlines)) {
                self.done.push(completion);
            }
        }
    }

    fn publish(&mut self, takes_at_pump: u64) {
        if self.done.is_empty() && self.starved.is_empty() {
            return;
        }
        let mut state = self.shared.lock();
        let takes = self.shared.takes.load(Ordering::Acquire);
        state.completions.append(&mut self.done);
        self.arenas.published(takes);
        // Starved reads need a take to free space; one that already happened
        // since the pump means space may be free now, so just go round again.
        let retry_now = !self.starved.is_empty() && takes != takes_at_pump;
        state.starved = !self.starved.is_empty() && !retry_now;
        let notify = state.notify_once();
        drop(state);
        if retry_now {
            self.shared.wake();
        }
        if notify {
            (self.shared.notify)();
        }
    }

    /// Shuts every socket down at once and completes nothing: what a poller
    /// that failed leaves, so that its peers see their connections end. The
    /// descriptors stay open until the poller is dropped: its consumer may
    /// still name them (a send from the JS thread) until it hears of the
    /// failure, and a closed number could by then be another socket's.
    pub fn shut_down_sockets(&mut self) {
        for conn in self.conns.iter().flatten() {
            let _ = sys::shutdown(conn.fd.as_fd(), std::net::Shutdown::Both);
        }
    }

    /// Completes everything still pending with WatcherClosed and closes every socket.
    pub fn shut_down(mut self) {
        let mut pending = std::mem::take(&mut self.connects);
        pending.extend(std::mem::take(&mut self.incoming));
        for submission in pending {
            if let Some(req) = submission.req() {
                self.done.push(Completion::failed(req, Error::WatcherClosed));
            }
        }
        for conn in std::mem::take(&mut self.conns).into_iter().flatten() {
            self.close_conn(conn, Error::WatcherClosed);
        }
        let mut state = self.shared.lock();
        // Submitted after the last turn took the queue (from another thread): they end here too.
        let late = std::mem::take(&mut state.submissions).into_iter().filter_map(|s| s.req());
        self.done.extend(late.map(|req| Completion::failed(req, Error::WatcherClosed)));
        state.completions.append(&mut self.done);
        state.stopped = true;
        state.starved = false;
        state.wake_sent = false;
        let notify = state.notify_once();
        drop(state);
        if notify {
            (self.shared.notify)();
        }
    }
}

/// The connection with this exact id (slot and generation), if it is open.
fn conn_mut(conns: &mut [Option<Conn>], id: ConnId) -> Option<&mut Conn> {
    conns.get_mut(slot_of(id))?.as_mut().filter(|c| c.id == id)
}

fn stream_mut(conns: &mut [Option<Conn>], id: ConnId) -> Result<&mut Conn, Error> {
    let conn = conn_mut(conns, id).ok_or(Error::ConnClosed)?;
    match conn.role {
        Role::Stream => Ok(conn),
        _ => Err(Error::WrongRole),
    }
}

fn note_readiness(conns: &mut [Option<Conn>], ready: &mut Vec<usize>, event: &Event) {
    let slot = event.token().0;
    let Some(Some(conn)) = conns.get_mut(slot) else { return };
    conn.readable |= event.is_readable() || event.is_read_closed();
    conn.writable |= event.is_writable() || event.is_write_closed();
    if event.is_error() || event.is_read_closed() {
        conn.hup = true;
        conn.writable = true;
    }
    schedule(conns, ready, slot);
}

fn schedule(conns: &mut [Option<Conn>], ready: &mut Vec<usize>, slot: usize) {
    if let Some(Some(conn)) = conns.get_mut(slot) {
        if !conn.queued {
            conn.queued = true;
            ready.push(slot);
        }
    }
}
