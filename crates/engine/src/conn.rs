//! One socket in the poller's table, with its queues of requests.
//!
//! Readiness is edge-triggered: `readable`/`writable` say that the last
//! attempt did not hit EAGAIN, or that an event came since. An event may be
//! spurious (a slot reused after free, or readiness already consumed): the
//! next attempt simply gets EAGAIN and clears the flag. Requests wait in FIFO
//! order; the next edge resumes them.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::arena::SwapArenas;
use crate::deadline::{Deadlines, Key};
use crate::op::{Completion, ConnId, Data, Error, ReqId};
use crate::sys;

/// How many queued writes go out in one vectored write.
const MAX_IOVECS: usize = 64;

/// What a connection slot holds: a stream, a listener, or a connect under way.
pub(crate) enum Role {
    Stream,
    /// Boxed: what only listeners need stays out of every connection.
    Listener(Box<Listening>),
    /// A connect in progress; its request completes when the socket turns
    /// writable, or fails when its deadline entry comes due first.
    Connecting { req: ReqId, deadline: Option<Key> },
}

pub(crate) struct Listening {
    pub accepts: VecDeque<AcceptRequest>,
    /// The pause before the next retry after an accept ran out of resources;
    /// zero when the last attempt did not (only the first failure is reported).
    pub backoff: Duration,
}

pub(crate) struct ReadRequest {
    pub req: ReqId,
    len: usize,
    /// Read-full requests fill memory of their own; swap reads use the arena.
    full: Option<Vec<u8>>,
    filled: usize,
    deadline: Option<Key>,
}

pub(crate) struct WriteRequest {
    pub req: ReqId,
    data: Vec<u8>,
    written: usize,
    deadline: Option<Key>,
    /// A close-write: no bytes; at the head of the queue it shuts the sending side down.
    /// A write with no bytes that is not one fails there.
    close: bool,
}

pub(crate) struct AcceptRequest {
    pub req: ReqId,
    pub conn: ConnId,
}

pub(crate) struct Conn {
    pub id: ConnId,
    pub fd: OwnedFd,
    pub role: Role,
    pub readable: bool,
    pub writable: bool,
    /// The peer hung up or the socket has an error: reads never block again.
    pub hup: bool,
    /// Already in the poller's list of sockets to pump this turn.
    pub queued: bool,
    reads: VecDeque<ReadRequest>,
    writes: VecDeque<WriteRequest>,
}

/// What pumping reads ended with.
#[derive(PartialEq, Eq)]
pub(crate) enum ReadProgress {
    Idle,
    /// A swap read is waiting for arena space.
    Starved,
}

impl Conn {
    pub fn new(id: ConnId, fd: OwnedFd, role: Role) -> Conn {
        // A new stream or listener is assumed ready: a wrong guess costs one
        // EAGAIN, and an edge that came between a consumer's registration and
        // the poller placing the socket found no one in the slot.
        let ready = !matches!(role, Role::Connecting { .. });
        Conn {
            id,
            fd,
            role,
            readable: ready,
            writable: ready,
            hup: false,
            queued: false,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    pub fn push_read(&mut self, req: ReqId, len: usize, full: bool, deadline: Option<Instant>, deadlines: &mut Deadlines) {
        let full = full.then(Vec::new);
        let deadline = deadline.map(|at| deadlines.add(at, self.id));
        push_one(&mut self.reads, ReadRequest { req, len, full, filled: 0, deadline });
    }

    pub fn push_write(&mut self, req: ReqId, data: Vec<u8>, deadline: Option<Instant>, deadlines: &mut Deadlines) {
        let deadline = deadline.map(|at| deadlines.add(at, self.id));
        push_one(&mut self.writes, WriteRequest { req, data, written: 0, deadline, close: false });
    }

    /// Queues a half-close behind the writes already queued.
    pub fn push_close_write(&mut self, req: ReqId) {
        push_one(&mut self.writes, WriteRequest { req, data: Vec::new(), written: 0, deadline: None, close: true });
    }

    /// Writes `data` at once when nothing is queued ahead of it, straight from
    /// the caller's memory; only what the socket does not take is copied into
    /// the queue. Returns the completion if the write is over; a deadline is
    /// set only for a write that has to wait.
    pub fn write_now(&mut self, req: ReqId, data: &[u8], deadline: Option<Instant>, deadlines: &mut Deadlines) -> Option<Completion> {
        let mut written = 0;
        // A write of nothing is queued, to fail in its turn (it would "send" whole).
        if self.writes.is_empty() && self.writable && !data.is_empty() {
            match sys::send_vectored(self.fd.as_fd(), &[IoSlice::new(data)]) {
                Ok(n) if n == data.len() => return Some(Completion { req, size: n, error: None, data: Data::None }),
                Ok(n) => {
                    self.writable = false;
                    written = n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Completion { req, size: 0, error: Some(e.into()), data: Data::None }),
            }
        }
        let deadline = deadline.map(|at| deadlines.add(at, self.id));
        push_one(&mut self.writes, WriteRequest { req, data: data.to_vec(), written, deadline, close: false });
        None
    }

    /// Takes the read or write whose deadline entry `key` came due out of its
    /// queue, with what it got done. The key is unique, so a later request
    /// that reuses the request id is never mistaken for this one.
    pub fn expire(&mut self, key: Key, deadlines: &mut Deadlines) -> Option<Completion> {
        if let Some(i) = self.reads.iter().position(|r| r.deadline == Some(key)) {
            let read = self.reads.remove(i)?;
            return Some(read.finish(Some(Error::Deadline), Data::None, deadlines));
        }
        let i = self.writes.iter().position(|w| w.deadline == Some(key))?;
        Some(self.writes.remove(i)?.finish(Some(Error::Deadline), deadlines))
    }

    /// Completes every request still queued here with `error`.
    pub fn fail_all(&mut self, error: Error, out: &mut Vec<Completion>, deadlines: &mut Deadlines) {
        out.extend(self.reads.drain(..).map(|r| r.finish(Some(error), Data::None, deadlines)));
        out.extend(self.writes.drain(..).map(|w| w.finish(Some(error), deadlines)));
        match &mut self.role {
            Role::Listener(listening) => out.extend(listening.accepts.drain(..).map(|a| Completion::failed(a.req, error))),
            Role::Connecting { req, deadline } => {
                if let Some(key) = deadline.take() {
                    deadlines.remove(key);
                }
                out.push(Completion::failed(*req, error));
                self.role = Role::Stream;
            }
            Role::Stream => {}
        }
    }

    /// Writes queued data until the queue is empty or the socket is full.
    pub fn pump_writes(&mut self, out: &mut Vec<Completion>, deadlines: &mut Deadlines) {
        while let Some(head) = self.writes.front() {
            if head.data.is_empty() {
                // A half-close or a write of nothing: every write queued before
                // it has gone out (or expired), and it needs no room in the
                // socket, so no edge either.
                let head = self.writes.pop_front().expect("head exists");
                let error = match head.close {
                    true => sys::shutdown(self.fd.as_fd(), std::net::Shutdown::Write).err().map(Error::from),
                    false => Some(Error::EmptyBuffer),
                };
                out.push(head.finish(error, deadlines));
                continue;
            }
            if !self.writable {
                break;
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slice, w) in slices.iter_mut().zip(self.writes.iter().take_while(|w| !w.data.is_empty())) {
                *slice = IoSlice::new(&w.data[w.written..]);
                count += 1;
            }
            let wanted: usize = slices[..count].iter().map(|s| s.len()).sum();
            match sys::send_vectored(self.fd.as_fd(), &slices[..count]) {
                Ok(n) => {
                    // A short write means the socket buffer is full; the next edge says when it drains.
                    self.writable = n == wanted;
                    self.advance_writes(n, out, deadlines);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let failed = self.writes.pop_front().expect("queue is not empty");
                    out.push(failed.finish(Some(e.into()), deadlines));
                }
            }
        }
    }

    fn advance_writes(&mut self, mut n: usize, out: &mut Vec<Completion>, deadlines: &mut Deadlines) {
        while n > 0 {
            let head = self.writes.front_mut().expect("the kernel wrote no more than was queued");
            let rest = head.data.len() - head.written;
            if n < rest {
                head.written += n;
                return;
            }
            n -= rest;
            let mut done = self.writes.pop_front().expect("head exists");
            done.written += rest;
            out.push(done.finish(None, deadlines));
        }
    }

    /// Reads for queued requests until the queue is empty or the socket is drained.
    pub fn pump_reads(
        &mut self,
        arenas: &mut SwapArenas,
        takes: u64,
        swap_max: usize,
        out: &mut Vec<Completion>,
        deadlines: &mut Deadlines,
    ) -> ReadProgress {
        while (self.readable || self.hup) && !self.reads.is_empty() {
            let head = self.reads.front_mut().expect("queue is not empty");
            let (result, asked, data) = match head.full.as_mut() {
                Some(buf) => {
                    if buf.is_empty() {
                        // Allocated when bytes are first believed there, not at
                        // submission: idle reads cost nothing. A length the
                        // machine cannot give fails the read, not the process.
                        if buf.try_reserve_exact(head.len).is_err() {
                            let read = self.reads.pop_front().expect("head exists");
                            out.push(read.finish(Some(Error::Os(libc::ENOMEM)), Data::None, deadlines));
                            continue;
                        }
                        buf.resize(head.len, 0);
                    }
                    let space = &mut buf[head.filled..];
                    (sys::recv(self.fd.as_fd(), space), space.len(), None)
                }
                None => {
                    let Some((arena, offset, space)) = arenas.reserve(head.len.min(swap_max), takes) else {
                        return ReadProgress::Starved;
                    };
                    let asked = space.len();
                    (sys::recv(self.fd.as_fd(), space), asked, Some((arena, offset)))
                }
            };
            match result {
                Ok(0) => {
                    self.hup = true;
                    let read = self.reads.pop_front().expect("head exists");
                    out.push(read.finish(Some(Error::Eof), Data::None, deadlines));
                }
                Ok(n) => {
                    // A short read drained the socket; more data will raise a new edge.
                    self.readable = n == asked;
                    head.filled += n;
                    if let Some((arena, offset)) = data {
                        arenas.commit(n);
                        let read = self.reads.pop_front().expect("head exists");
                        out.push(read.finish(None, Data::Swap { arena, offset }, deadlines));
                    } else if head.filled == head.len {
                        let read = self.reads.pop_front().expect("head exists");
                        out.push(read.finish(None, Data::None, deadlines));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    if self.hup {
                        // Spurious hang-up flag from an error event with nothing to read: wait for the next edge.
                        self.hup = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.hup = true;
                    let read = self.reads.pop_front().expect("head exists");
                    out.push(read.finish(Some(e.into()), Data::None, deadlines));
                }
            }
        }
        ReadProgress::Idle
    }
}

/// Queues a request, growing the queue one slot at a time at first: most
/// connections have one read (and maybe one write) pending, and the default
/// first allocation of four slots would cost every idle connection 200 bytes.
fn push_one<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() == queue.capacity() && queue.capacity() < 4 {
        queue.reserve_exact(1);
    }
    queue.push_back(item);
}

impl ReadRequest {
    /// The completion of this read; a read-full hands over its own bytes,
    /// also when it ends early (end of stream, error, deadline). Its deadline
    /// entry dies with it.
    fn finish(self, error: Option<Error>, data: Data, deadlines: &mut Deadlines) -> Completion {
        if let Some(key) = self.deadline {
            deadlines.remove(key);
        }
        let data = match self.full {
            Some(mut buf) if self.filled > 0 => {
                buf.truncate(self.filled);
                Data::Owned(buf)
            }
            _ => data,
        };
        Completion { req: self.req, size: self.filled, error, data }
    }
}

impl WriteRequest {
    /// The completion of this write, with the bytes it got out; its deadline
    /// entry dies with it.
    fn finish(self, error: Option<Error>, deadlines: &mut Deadlines) -> Completion {
        if let Some(key) = self.deadline {
            deadlines.remove(key);
        }
        Completion { req: self.req, size: self.written, error, data: Data::None }
    }
}
