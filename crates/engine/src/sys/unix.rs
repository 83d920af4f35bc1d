//! Calls shared by every Unix the engine supports.

use std::io::{self, IoSlice};
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};

use crate::Address;

/// Turns a C-style `-1 means errno` result into an io::Result.
pub(crate) fn cvt<T: Default + PartialOrd>(rc: T) -> io::Result<T> {
    if rc < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Reads into `buf`; Ok(0) is end of stream.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes for the duration of the call.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    cvt(n).map(|n| n as usize)
}

fn set_int_option(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: value lives across the call and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(rc).map(drop)
}

/// Makes a stream socket fit for the poller: non-blocking, and on the BSDs
/// without SIGPIPE.
pub fn prepare_stream(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an open descriptor touch only its status flags.
    unsafe {
        let flags = cvt(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        cvt(libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_NOSIGPIPE, 1)?;
    Ok(())
}

/// Latency matters more than packet count for the small messages this library
/// is for, so sockets the engine creates get TCP_NODELAY, as in Go's net
/// package. Unix sockets refuse the option, which is fine there.
pub fn set_nodelay(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, on.into())
}

/// TCP keep-alive probes, the first after `idle_secs` of silence (when on).
pub fn set_keepalive(fd: BorrowedFd<'_>, on: bool, idle_secs: u32) -> io::Result<()> {
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, on.into())?;
    if on && idle_secs > 0 {
        let secs = idle_secs.min(libc::c_int::MAX as u32) as libc::c_int;
        set_int_option(fd, libc::IPPROTO_TCP, super::os::KEEPALIVE_IDLE, secs)?;
    }
    Ok(())
}

/// Sends what the socket takes of `data` now, without blocking.
pub fn send(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    super::os::send_vectored(fd, &[IoSlice::new(data)])
}

/// Ends the sending direction: the peer reads end of stream; reading goes on.
pub fn shutdown(fd: BorrowedFd<'_>, how: std::net::Shutdown) -> io::Result<()> {
    let how = match how {
        std::net::Shutdown::Read => libc::SHUT_RD,
        std::net::Shutdown::Write => libc::SHUT_WR,
        std::net::Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: shutdown on an open descriptor.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), how) }).map(drop)
}

/// The local and the peer's address of a TCP socket; None for what is not
/// an IP address (a Unix socket) or not there (a peer gone).
pub fn socket_addresses(fd: BorrowedFd<'_>) -> (Option<SocketAddr>, Option<SocketAddr>) {
    (socket_name(fd, libc::getsockname), socket_name(fd, libc::getpeername))
}

type NameCall = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn socket_name(fd: BorrowedFd<'_>, call: NameCall) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are valid for writes and len holds storage's size.
    cvt(unsafe { call(fd.as_raw_fd(), (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len) }).ok()?;
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the kernel wrote a sockaddr_in.
            let sin = unsafe { &*(&storage as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the kernel wrote a sockaddr_in6.
            let sin6 = unsafe { &*(&storage as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)))
        }
        _ => None,
    }
}

/// The pending error of a socket (how a non-blocking connect reports its outcome).
pub fn take_socket_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes and len holds value's size.
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR, (&mut value as *mut libc::c_int).cast(), &mut len)
    };
    cvt(rc)?;
    Ok((value != 0).then(|| io::Error::from_raw_os_error(value)))
}

/// The index of the network interface named `name` (an IPv6 scope).
pub fn interface_index(name: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `name` is NUL-terminated and outlives the call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::from_raw_os_error(libc::ENODEV)),
        index => Ok(index),
    }
}

/// A close-on-exec duplicate of a descriptor owned by someone else (a net.Socket being delegated).
fn new_socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation; the result is checked.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM, 0) })?;
    // SAFETY: the descriptor is new and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: FD_CLOEXEC is a valid flag for F_SETFD on an open descriptor.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(fd)
}

/// A TCP socket address in the C layout, with its length.
fn sockaddr_of(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// A listening socket, non-blocking. The backlog is ours to choose: many
/// libraries fix it at 128 or 1024, and a burst of 8192 connects then loses
/// SYNs to a one-second retransmit.
pub fn listen(addr: &Address, backlog: u32, reuse_port: bool) -> io::Result<OwnedFd> {
    let backlog = backlog.min(libc::c_int::MAX as u32) as libc::c_int;
    let fd = match addr {
        Address::Inet(inet) => {
            let domain = if inet.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
            let fd = new_socket(domain)?;
            let sock = fd.as_fd();
            set_int_option(sock, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
            if reuse_port {
                set_int_option(sock, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
            }
            let (storage, len) = sockaddr_of(inet);
            // SAFETY: storage holds a valid address of length len.
            cvt(unsafe { libc::bind(fd.as_raw_fd(), (&storage as *const libc::sockaddr_storage).cast(), len) })?;
            fd
        }
        Address::Unix(path) => {
            let listener = mio::net::UnixListener::bind(path)?;
            // SAFETY: into_raw_fd hands over sole ownership of the descriptor.
            unsafe { OwnedFd::from_raw_fd(listener.into_raw_fd()) }
        }
    };
    // Listening again on a listening socket (the Unix case) just sets the backlog.
    // SAFETY: listen on an open socket descriptor.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })
        .and_then(|_| prepare_stream(fd.as_fd()))
        .inspect_err(|_| unbind(addr))?;
    Ok(fd)
}

/// Removes the file a Unix socket listener was bound to, for a listen that
/// failed after binding (nothing for an internet address).
pub fn unbind(addr: &Address) {
    if let Address::Unix(path) = addr {
        let _ = std::fs::remove_file(path);
    }
}

/// Starts a non-blocking connect; the outcome shows up as writability, then SO_ERROR.
pub fn connect(addr: &Address) -> io::Result<OwnedFd> {
    let raw = match addr {
        Address::Inet(inet) => mio::net::TcpStream::connect(*inet)?.into_raw_fd(),
        Address::Unix(path) => mio::net::UnixStream::connect(path)?.into_raw_fd(),
    };
    // SAFETY: into_raw_fd hands over sole ownership of the descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    prepare_stream(fd.as_fd())?;
    let _ = set_nodelay(fd.as_fd(), true);
    Ok(fd)
}

/// The local port of a bound TCP socket (0 for Unix sockets).
pub fn local_port(fd: BorrowedFd<'_>) -> u16 {
    socket_name(fd, libc::getsockname).map_or(0, |addr| addr.port())
}
