//! macOS and BSD calls that differ from Linux.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::unix::{cvt, prepare_stream, set_nodelay};

/// The TCP option for the keep-alive idle time.
#[cfg(any(target_os = "macos", target_os = "ios"))]
pub const KEEPALIVE_IDLE: libc::c_int = libc::TCP_KEEPALIVE;
#[cfg(not(any(target_os = "macos", target_os = "ios")))]
pub const KEEPALIVE_IDLE: libc::c_int = libc::TCP_KEEPIDLE;

/// Accepts one pending connection: non-blocking, close-on-exec, TCP_NODELAY, no SIGPIPE.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: a null address and length are allowed when the peer address is not wanted.
    let fd = cvt(unsafe {
        libc::accept(listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut())
    })?;
    // SAFETY: accept returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fd is open; FD_CLOEXEC is a valid flag for F_SETFD.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    prepare_stream(fd.as_fd())?;
    let _ = set_nodelay(fd.as_fd(), true);
    Ok(fd)
}

/// Whether an accept failed for that one connection only, so the next may
/// succeed: a connection reset while it waited in the backlog.
pub fn accept_error_is_transient(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EINTR | libc::ECONNABORTED))
}

/// Writes the slices in one call; SIGPIPE is off per socket (SO_NOSIGPIPE in prepare_stream).
pub fn send_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let count = bufs.len().min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: IoSlice is ABI-compatible with iovec and bufs outlive the call.
    let n = unsafe { libc::writev(fd.as_raw_fd(), bufs.as_ptr() as *const libc::iovec, count) };
    cvt(n as isize).map(|n| n as usize)
}

/// Thread affinity has no portable form here.
pub fn pin_current_thread(_cpu: usize) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "CPU affinity is supported on Linux only",
    ))
}
