//! gaio's engine: proactor-style TCP and Unix-socket I/O on mio.
//!
//! A watcher is an [`Exchange`], where callers describe work as
//! [`Submission`]s (read, read-full, write, accept, connect, adopt a socket,
//! free) and take a [`Completion`] for every request, in batches, and a
//! poller behind it, run by a [`PollerThread`] or by the caller's own turns
//! through an [`InlinePoller`]. The poller waits on edge-triggered readiness, keeps a FIFO of reads and one of writes
//! per connection, writes queued data with one vectored call, reads into swap
//! arenas when no memory of the caller's is involved, and enforces deadlines
//! from a heap that sets the poll timeout.
//!
//! Nothing here knows about Node: the addon at the root of the repository
//! drives this crate, and so can any Rust program (see the tests).

mod arena;
mod armed;
mod conn;
mod deadline;
mod exchange;
mod inline;
mod op;
mod poller;
mod sys;
mod thread;
mod watcher;

pub use arena::ArenaMemory;
pub use op::{slot_of, Address, Completion, ConnId, Data, Error, ReqId, Submission, SLOT_BITS};
pub use sys::{send, set_keepalive, set_nodelay, socket_addresses};
pub use exchange::{Batch, Exchange};
pub use inline::InlinePoller;
pub use thread::PollerThread;
pub use watcher::Options;
