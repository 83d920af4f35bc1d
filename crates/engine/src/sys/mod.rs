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

pub use os::{accept, accept_error_is_transient, pin_current_thread, send_vectored};
pub use unix::{
    connect, interface_index, listen, local_port, prepare_stream, recv, send, set_keepalive, set_nodelay,
    shutdown, socket_addresses, take_socket_error, unbind,
};

#[cfg(test)]
mod tests {
    use std::io::Error;

    use super::accept_error_is_transient;

    #[test]
    fn an_accept_error_of_one_connection_is_retried_and_a_shortage_is_not() {
        let transient = |errno| accept_error_is_transient(&Error::from_raw_os_error(errno));
        assert!(transient(libc::ECONNABORTED));
        assert!(transient(libc::EINTR));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert!(transient(libc::EPROTO) && transient(libc::ENETUNREACH) && transient(libc::EHOSTUNREACH));
        for shortage in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(!transient(shortage), "errno {shortage} waits for the back-off");
        }
    }
}
