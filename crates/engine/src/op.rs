//! What crosses into the engine (submissions) and out of it (completions).

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::{OwnedFd, RawFd};
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

impl Address {
    /// An IP address with `port`; an IPv6 address may carry a scope
    /// (`fe80::1%eth0` or `fe80::1%2`), as in Node and Go.
    pub fn inet(host: &str, port: u16) -> io::Result<Address> {
        let invalid = || io::Error::from_raw_os_error(libc::EINVAL);
        let (ip, scope) = host.split_once('%').map_or((host, None), |(ip, scope)| (ip, Some(scope)));
        let ip: IpAddr = ip.parse().map_err(|_| invalid())?;
        let addr = match (ip, scope) {
            (ip, None) => SocketAddr::new(ip, port),
            (IpAddr::V6(ip), Some(scope)) => {
                let index = match scope.parse::<u32>() {
                    Ok(index) => index,
                    Err(_) => crate::sys::interface_index(scope)?,
                };
                SocketAddr::V6(SocketAddrV6::new(ip, port, 0, index))
            }
            (IpAddr::V4(_), Some(_)) => return Err(invalid()),
        };
        Ok(Address::Inet(addr))
    }
}

/// One request for the poller. Every variant that carries a `req` completes
/// exactly once, whatever happens to its connection or to the watcher.
#[derive(Debug)]
pub enum Submission {
    /// Read up to `len` bytes into the swap arena, or with `full`, exactly
    /// `len` bytes into memory of its own.
    Read { req: ReqId, conn: ConnId, len: usize, full: bool, deadline: Option<Instant> },
    /// Write every byte of `data`. A write of nothing fails with
    /// [`Error::EmptyBuffer`] in its turn, after the writes queued before it.
    Write { req: ReqId, conn: ConnId, data: Vec<u8>, deadline: Option<Instant> },
    /// Accept one connection on `listener`; it becomes connection `conn`.
    Accept { req: ReqId, listener: ConnId, conn: ConnId },
    /// Connect to `addr`; the stream becomes connection `conn`. A connect not
    /// done by `deadline` fails with [`Error::Deadline`] and closes its socket.
    Connect { req: ReqId, conn: ConnId, addr: Address, deadline: Option<Instant> },
    /// Shut down the sending direction once every write queued before it has
    /// gone out (a half-close: the peer reads end of stream, reads go on here).
    CloseWrite { req: ReqId, conn: ConnId },
    /// Take over a socket registered with the poll already: only
    /// [`crate::Exchange::adopt`] and [`crate::Exchange::listen`] make one.
    Adopt(Adoption),
    /// Close a connection or listener now; what was pending on it completes
    /// with [`Error::ConnClosed`].
    Free { conn: ConnId },
    /// A request the submitter could not turn into one of the above (an
    /// address that does not resolve, say): it completes with `error` in turn,
    /// so one bad request never holds up or loses the others of its batch.
    Reject { req: ReqId, error: Error },
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
    /// The request does not apply to the connection's role (a read on a listener, say).
    WrongRole,
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
    /// Not bytes: a successful accept or connect hands over the new socket's
    /// descriptor, for calls the consumer makes on it itself (addresses and
    /// socket options). It stays the connection's until the consumer frees it.
    Socket(RawFd),
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

/// A connected stream or a listening socket on its way to the poller,
/// registered with its poll by the consumer (see `Shared::hand_over`).
#[derive(Debug)]
pub struct Adoption {
    pub(crate) conn: ConnId,
    pub(crate) fd: OwnedFd,
    pub(crate) listener: bool,
}

impl Submission {
    /// A read of nothing, which could never make progress. (A write of
    /// nothing waits its turn to fail: a consumer may keep the order of its
    /// writes' results that way.)
    pub(crate) fn is_empty_read(&self) -> bool {
        matches!(self, Submission::Read { len: 0, .. })
    }

    /// The request this submission completes, if it is one.
    pub fn req(&self) -> Option<ReqId> {
        match self {
            Submission::Read { req, .. }
            | Submission::Write { req, .. }
            | Submission::Accept { req, .. }
            | Submission::Connect { req, .. }
            | Submission::CloseWrite { req, .. }
            | Submission::Reject { req, .. } => Some(*req),
            Submission::Adopt(_) | Submission::Free { .. } => None,
        }
    }
}
