//! TCP and UDP sockets whose blocking operations park the calling
//! goroutine, not its thread: while one goroutine waits for a peer, its
//! processor runs the others (docs/design.md, "Netpoller and network I/O").
//!
//! The types mirror `std::net` — [`TcpListener`], [`TcpStream`],
//! [`UdpSocket`] — with `std::io::Read`/`Write`, timeouts and
//! `std::io::Error`s carrying the OS's kind (`ConnectionRefused`,
//! `AddrInUse`, …; a timeout is `TimedOut`). Two additions:
//!
//! - `close(&self)`: closes the socket while other goroutines may be
//!   blocked on it (in `accept`, `read`, …); they wake with an error of
//!   kind `NotConnected` ("use of closed file or network connection").
//!   Share the socket with `Arc` for that. Dropping a socket closes it too.
//! - They work on plain threads as well (blocking the thread), so a test's
//!   main thread can talk to a server running in goroutines.
//!
//! Name resolution (`ToSocketAddrs`, which may ask DNS) runs inside
//! [`crate::syscall::blocking`].
//!
//! ```no_run
//! use std::io::{Read, Write};
//! gort::run(|| {
//!     let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = l.local_addr().unwrap();
//!     gort::spawn(move || {
//!         let (mut s, _) = l.accept().unwrap();
//!         let mut buf = [0u8; 4];
//!         s.read_exact(&mut buf).unwrap();
//!         s.write_all(&buf).unwrap();
//!     });
//!     let mut c = gort::net::TcpStream::connect(addr).unwrap();
//!     c.write_all(b"ping").unwrap();
//!     let mut buf = [0u8; 4];
//!     c.read_exact(&mut buf).unwrap();
//!     assert_eq!(&buf, b"ping");
//! });
//! ```

use crate::fd::{cvt, cvt_int, NetFd};
use crate::netpoll::Mode;
use std::io;
use std::net::{
    Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs,
};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::time::{Duration, Instant};

/// listen(2)'s backlog; the kernel caps it at net.core.somaxconn.
const BACKLOG: libc::c_int = 4096;

// ---------------------------------------------------------------------------
// Addresses and sockets.

fn resolve(addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = crate::syscall::blocking(|| addr.to_socket_addrs())?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        ));
    }
    Ok(addrs)
}

/// Tries `f` on each address in turn; returns the first success or the
/// last error (as std does).
fn each_addr<T>(
    addr: impl ToSocketAddrs,
    mut f: impl FnMut(&SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in resolve(addr)? {
        match f(&a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("resolve returned no address"))
}

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large enough and suitably
            // aligned for any sockaddr.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: a sockaddr_in6 fits in the sockaddr_storage it is written
            // into.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn from_sockaddr(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> io::Result<SocketAddr> {
    let len = len as usize;
    match ss.ss_family as libc::c_int {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in (family and length say so).
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family is AF_INET6 and `len` covers a sockaddr_in6,
            // which `ss` (a sockaddr_storage) can hold.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "unsupported socket address family",
        )),
    }
}

/// A getsockname/getpeername-style call, decoded.
fn sock_name(
    fd: RawFd,
    f: unsafe extern "C" fn(RawFd, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int,
) -> io::Result<SocketAddr> {
    // SAFETY: plain data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss`/`len` describe a writable buffer of that size.
    cvt_int(unsafe {
        f(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    from_sockaddr(&ss, len)
}

/// A new non-blocking, close-on-exec socket for `addr`'s family, owned by
/// a `NetFd` (registered with the netpoller).
fn socket(addr: &SocketAddr, ty: libc::c_int) -> io::Result<NetFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: creates a new descriptor.
    let fd =
        cvt_int(unsafe { libc::socket(family, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })?;
    NetFd::new(fd)
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a valid c_int of the stated size.
    cvt_int(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v`/`len` describe a writable c_int.
    cvt_int(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

fn bind(fd: &NetFd, addr: &SocketAddr) -> io::Result<()> {
    let (ss, len) = sockaddr(addr);
    fd.with(|raw| {
        // SAFETY: `ss` holds a sockaddr of length `len`.
        cvt_int(unsafe { libc::bind(raw, (&ss as *const libc::sockaddr_storage).cast(), len) })
            .map(drop)
    })
}

// ---------------------------------------------------------------------------
// TcpListener.

/// A TCP socket server, listening for connections.
#[derive(Debug)]
pub struct TcpListener {
    fd: NetFd,
}

impl TcpListener {
    /// Binds to `addr` (the first of its addresses that works) and
    /// listens, with `SO_REUSEADDR` set as std does. Port 0 picks a free
    /// port: see [`TcpListener::local_addr`].
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        each_addr(addr, |a| {
            let fd = socket(a, libc::SOCK_STREAM)?;
            setsockopt_int(fd.raw(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
            bind(&fd, a)?;
            // SAFETY: listen on our own socket.
            cvt_int(unsafe { libc::listen(fd.raw(), BACKLOG) })?;
            Ok(TcpListener { fd })
        })
    }

    /// Takes over a std listener (made non-blocking here).
    pub fn from_std(l: std::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener {
            fd: NetFd::new(l.into_raw_fd())?,
        })
    }

    /// Another handle to the same listening socket (see
    /// [`TcpStream::try_clone`]).
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener {
            fd: self.fd.try_clone()?,
        })
    }

    /// Waits for a connection; parks the goroutine meanwhile.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        // SAFETY: plain data.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len: libc::socklen_t = 0;
        let fd = self.fd.io(Mode::Read, |fd| {
            len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: `ss`/`len` describe a writable buffer of that size.
            let r = unsafe {
                libc::accept4(
                    fd,
                    (&mut ss as *mut libc::sockaddr_storage).cast(),
                    &mut len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            match cvt_int(r) {
                // The peer gave up before we accepted: try the next one.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
                    Err(io::Error::from_raw_os_error(libc::EAGAIN))
                }
                other => other,
            }
        })?;
        let stream = TcpStream {
            fd: NetFd::new(fd)?,
        };
        Ok((stream, from_sockaddr(&ss, len)?))
    }

    /// An endless iterator over accepted connections.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with(|fd| sock_name(fd, libc::getsockname))
    }

    /// Stops listening now: a goroutine blocked in `accept` wakes with an
    /// error of kind `NotConnected`; the port is free once it has left.
    pub fn close(&self) -> io::Result<()> {
        self.fd.close()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

/// Iterator returned by [`TcpListener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

// ---------------------------------------------------------------------------
// TcpStream.

/// A TCP connection.
#[derive(Debug)]
pub struct TcpStream {
    fd: NetFd,
}

impl TcpStream {
    /// Connects to `addr` (each of its addresses in turn until one
    /// accepts); parks the goroutine while the handshake runs.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        each_addr(addr, |a| TcpStream::connect_until(a, None))
    }

    /// Connects with a timeout (`TimedOut` when it passes). A zero timeout
    /// is an error, as in std.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        TcpStream::connect_until(addr, Some(Instant::now() + timeout))
    }

    fn connect_until(addr: &SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        let fd = socket(addr, libc::SOCK_STREAM)?;
        let (ss, len) = sockaddr(addr);
        // SAFETY: `ss` holds a sockaddr of length `len`.
        let r =
            unsafe { libc::connect(fd.raw(), (&ss as *const libc::sockaddr_storage).cast(), len) };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // In progress (EINTR: it goes on in the background too).
                Some(libc::EINPROGRESS) | Some(libc::EINTR) => {}
                _ => return Err(e),
            }
            loop {
                fd.wait(Mode::Write, deadline)?;
                match getsockopt_int(fd.raw(), libc::SOL_SOCKET, libc::SO_ERROR)? {
                    0 => {}
                    libc::EINPROGRESS | libc::EALREADY | libc::EINTR => continue,
                    err => return Err(io::Error::from_raw_os_error(err)),
                }
                // No error yet: connected, or a spurious wake-up.
                match sock_name(fd.raw(), libc::getpeername) {
                    Ok(_) => break,
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(TcpStream { fd })
    }

    /// Takes over a std stream (made non-blocking here).
    pub fn from_std(s: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            fd: NetFd::new(s.into_raw_fd())?,
        })
    }

    /// Another handle to the same connection (a duplicated fd, as std's
    /// `try_clone`), e.g. to read in one goroutine and write in another.
    /// The connection stays open until every handle is closed; closing one
    /// does not wake goroutines blocked on another (share one stream
    /// through `Arc` for that: `&TcpStream` is `Read` and `Write` too).
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            fd: self.fd.try_clone()?,
        })
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with(|fd| sock_name(fd, libc::getpeername))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with(|fd| sock_name(fd, libc::getsockname))
    }

    /// Shuts down the read half, the write half (the peer reads end of
    /// file), or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: shutdown on our own socket.
        self.fd
            .with(|fd| cvt_int(unsafe { libc::shutdown(fd, how) }).map(drop))
    }

    /// Sets `TCP_NODELAY` (Nagle's algorithm off). Unlike Go, the default
    /// is the kernel's (Nagle on), as in std.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.fd
            .with(|fd| setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, on as libc::c_int))
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.fd
            .with(|fd| getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY))
            .map(|v| v != 0)
    }

    /// Sets the timeout of each read (None: none). A read that times out
    /// fails with `TimedOut`. Zero is an error, as in std.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.fd.set_timeout(Mode::Read, d)
    }

    /// Sets the timeout of each write.
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.fd.set_timeout(Mode::Write, d)
    }

    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.fd.timeout(Mode::Read))
    }

    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.fd.timeout(Mode::Write))
    }

    /// Closes the connection now; goroutines blocked on it wake with an
    /// error of kind `NotConnected`.
    pub fn close(&self) -> io::Result<()> {
        self.fd.close()
    }
}

impl TcpStream {
    fn read_fd(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.read(buf)
    }

    /// `send(MSG_NOSIGNAL)`: a peer that is gone gives `BrokenPipe`, never
    /// a SIGPIPE, even where the program did not ignore that signal.
    fn write_fd(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.io(Mode::Write, |fd| {
            // SAFETY: `buf` is readable.
            cvt(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) })
        })
    }
}

crate::fd::netfd_io_traits!(TcpStream);

// ---------------------------------------------------------------------------
// UdpSocket.

/// A UDP socket.
#[derive(Debug)]
pub struct UdpSocket {
    fd: NetFd,
}

impl UdpSocket {
    /// Binds to `addr` (port 0: any free port).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        each_addr(addr, |a| {
            let fd = socket(a, libc::SOCK_DGRAM)?;
            bind(&fd, a)?;
            Ok(UdpSocket { fd })
        })
    }

    /// Another handle to the same socket (see [`TcpStream::try_clone`]).
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            fd: self.fd.try_clone()?,
        })
    }

    /// Sends a datagram to `addr` (its first address); waits while the
    /// send buffer is full.
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        let a = resolve(addr)?[0];
        let (ss, len) = sockaddr(&a);
        self.fd.io(Mode::Write, |fd| {
            // SAFETY: `buf` is readable; `ss` holds a sockaddr of `len`.
            cvt(unsafe {
                libc::sendto(
                    fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                    (&ss as *const libc::sockaddr_storage).cast(),
                    len,
                )
            })
        })
    }

    /// Receives a datagram (truncated to `buf`), waiting for one; returns
    /// its length and sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        // SAFETY: plain data.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len: libc::socklen_t = 0;
        let n = self.fd.io(Mode::Read, |fd| {
            len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: `buf` is writable; `ss`/`len` describe a buffer.
            cvt(unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut ss as *mut libc::sockaddr_storage).cast(),
                    &mut len,
                )
            })
        })?;
        Ok((n, from_sockaddr(&ss, len)?))
    }

    /// Sets the default peer for `send`/`recv` and filters what `recv`
    /// gets to that peer.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        each_addr(addr, |a| {
            let (ss, len) = sockaddr(a);
            self.fd.with(|fd| {
                // SAFETY: `ss` holds a sockaddr of length `len`.
                cvt_int(unsafe {
                    libc::connect(fd, (&ss as *const libc::sockaddr_storage).cast(), len)
                })
                .map(drop)
            })
        })
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.io(Mode::Write, |fd| {
            // SAFETY: `buf` is readable.
            cvt(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) })
        })
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.io(Mode::Read, |fd| {
            // SAFETY: `buf` is writable.
            cvt(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with(|fd| sock_name(fd, libc::getsockname))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with(|fd| sock_name(fd, libc::getpeername))
    }

    /// Sets the timeout of each receive (None: none); zero is an error.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.fd.set_timeout(Mode::Read, d)
    }

    /// Sets the timeout of each send.
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.fd.set_timeout(Mode::Write, d)
    }

    /// Closes the socket now; goroutines blocked on it wake with an error.
    pub fn close(&self) -> io::Result<()> {
        self.fd.close()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}
