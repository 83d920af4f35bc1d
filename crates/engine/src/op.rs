//! What crosses into the engine (submissions) and out of it (completions).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Instant;

/// Names one request; chosen by the submitter and handed back in its completion.
pub type ReqId = u32;

/// Names one connection or listener. The submitter allocates ids; the low
/// [`SLOT_BITS`] bits are a table slot and the rest a generation, so a freed
/// and reused slot is never confused with its previous owner.
pub type ConnId = u32;

/// How many low bits of a [`ConnId`] select the slot.
pub const SLOT_BITS: u32 = 20;

/// The table slot of a connection id.
pub fn slot_of(conn: ConnId) -> usize {
    (conn & ((1 << SLOT_BITS) - 1)) as usize
}

/// Where to listen or connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Inet(SocketAddr),
    Unix(PathBuf),
}

/// One request for the poller. Every variant that carries a `req` completes
/// exactly once, whatever happens to its connection or to the watcher.
#[derive(Debug)]
pub enum Submission {
    /// Read up to `len` bytes into the swap arena, or with `full`, exactly
    /// `len` bytes into memory of its own.
    Read { req: ReqId, conn: ConnId, len: usize, full: bool, deadline: Option<Instant> },
    /// Write every byte of `data`.
    Write { req: ReqId, conn: ConnId, data: Vec<u8>, deadline: Option<Instant> },
    /// Accept one connection on `listener`; it becomes connection `conn`.
    Accept { req: ReqId, listener: ConnId, conn: ConnId },
    /// Connect to `addr`; the stream becomes connection `conn`.
    Connect { req: ReqId, conn: ConnId, addr: Address },
    /// Take over a connected stream socket.
    AdoptStream { conn: ConnId, fd: OwnedFd },
    /// Take over a listening socket; a Unix socket's `path` is removed when it closes.
    AdoptListener { conn: ConnId, fd: OwnedFd, path: Option<PathBuf> },
    /// Close a connection or listener now; what was pending on it completes
    /// with [`Error::ConnClosed`].
    Free { conn: ConnId },
}

/// Why a request did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The peer closed its side: no more bytes will come.
    Eof,
    /// The request's deadline passed first.
    Deadline,
    /// The connection was freed, or never existed.
    ConnClosed,
    /// The watcher was closed.
    WatcherClosed,
    /// The request does not apply to this kind of connection (a read on a listener, say).
    WrongKind,
    /// A read or write of zero bytes.
    EmptyBuffer,
    /// An errno from the operating system.
    Os(i32),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Os(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// Where a completed read's bytes are.
#[derive(Debug, PartialEq, Eq)]
pub enum Data {
    /// Nothing to hand over (writes, accepts, failed reads).
    None,
    /// In swap arena `arena` at `offset`, valid until the take after the one
    /// that delivered this completion.
    Swap { arena: usize, offset: usize },
    /// In memory the completion owns (read-full requests).
    Owned(Vec<u8>),
}

/// The outcome of one request.
#[derive(Debug)]
pub struct Completion {
    pub req: ReqId,
    /// Bytes read or written, also when `error` is set (a partial read-full or write).
    pub size: usize,
    pub error: Option<Error>,
    pub data: Data,
}

impl Completion {
    pub(crate) fn failed(req: ReqId, error: Error) -> Completion {
        Completion { req, size: 0, error: Some(error), data: Data::None }
    }
}

impl Submission {
    /// A read or write of nothing, which could never make progress.
    pub(crate) fn is_empty_transfer(&self) -> bool {
        match self {
            Submission::Read { len, .. } => *len == 0,
            Submission::Write { data, .. } => data.is_empty(),
            _ => false,
        }
    }

    /// The request this submission completes, if it is one.
    pub fn req(&self) -> Option<ReqId> {
        match self {
            Submission::Read { req, .. }
            | Submission::Write { req, .. }
            | Submission::Accept { req, .. }
            | Submission::Connect { req, .. } => Some(*req),
            Submission::AdoptStream { .. } | Submission::AdoptListener { .. } | Submission::Free { .. } => None,
        }
    }
}
