//! The operating system behind one contract.
//!
//! Everything the engine asks of the kernel beyond what mio offers lives here:
//! the read and write calls on raw descriptors, accept, socket creation for
//! listeners, and thread affinity. `unix.rs` holds what Linux, macOS and the BSDs
//! share; `linux.rs` and `bsd.rs` hold the few calls that differ.

mod unix;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;
#[cfg(any(target_os = "linux", target_os = "android"))]
use linux as os;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod bsd;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use bsd as os;

pub use os::{accept, pin_current_thread, send_vectored};
pub use unix::{
    connect, interface_index, listen, local_port, prepare_stream, recv, send, set_keepalive, set_nodelay,
    shutdown_write, socket_addresses, take_socket_error,
};
