//! Goroutine-friendly I/O on any file descriptor that supports
//! non-blocking mode: pipes, Unix sockets, terminals, eventfds, …
//!
//! [`Fd`] takes ownership of the descriptor, switches it to non-blocking
//! mode and registers it with the netpoller. Reading or writing then
//! parks the calling goroutine, not its thread, while the fd is not ready.
//! Regular files are not supported: Linux reports them always ready (their
//! reads block in the kernel instead), and epoll refuses them — use
//! [`crate::syscall::blocking`] for those.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::os::unix::net::UnixStream;
//! gort::run(|| {
//!     let (a, b) = UnixStream::pair().unwrap();
//!     let (a, mut b) = (gort::io::Fd::new(a).unwrap(), gort::io::Fd::new(b).unwrap());
//!     let h = gort::spawn(move || {
//!         let mut buf = [0u8; 5];
//!         b.read_exact(&mut buf).unwrap();
//!         buf
//!     });
//!     (&a).write_all(b"hello").unwrap();
//!     assert_eq!(&h.join().unwrap(), b"hello");
//! });
//! ```

use crate::fd::NetFd;
use crate::netpoll::Mode;
use std::io;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A file descriptor watched by the netpoller (see the module docs).
///
/// Reads and writes of the same direction from several goroutines queue up
/// one after another. [`Fd::close`] may be called while other goroutines
/// are blocked on the fd: they wake with an error of kind
/// [`io::ErrorKind::NotConnected`].
#[derive(Debug)]
pub struct Fd {
    fd: NetFd,
}

impl Fd {
    /// Takes ownership of `fd` (e.g. an `OwnedFd`, `UnixStream`,
    /// `ChildStdout` or `PipeReader`), makes it non-blocking and registers
    /// it. Fails if epoll refuses the fd (a regular file); the fd is then
    /// closed.
    pub fn new(fd: impl Into<OwnedFd>) -> io::Result<Fd> {
        let raw = fd.into().into_raw_fd();
        Ok(Fd {
            fd: NetFd::new(raw)?,
        })
    }

    /// Reads like `read(2)`, waiting (parking the goroutine) while there is
    /// nothing to read. Returns 0 at end of file.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.read(buf)
    }

    /// Writes like `write(2)`, waiting while the fd cannot take more.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.write(buf)
    }

    /// Runs a custom read-side operation (`recvmsg`, `ioctl`, …): `op` is
    /// called with the fd and retried whenever it fails with
    /// [`io::ErrorKind::WouldBlock`], after the fd became readable.
    pub fn read_with<T>(&self, op: impl FnMut(RawFd) -> io::Result<T>) -> io::Result<T> {
        self.fd.io(Mode::Read, op)
    }

    /// `read_with` for the write side.
    pub fn write_with<T>(&self, op: impl FnMut(RawFd) -> io::Result<T>) -> io::Result<T> {
        self.fd.io(Mode::Write, op)
    }

    /// Sets the timeout of each read (None: wait forever). A read that
    /// times out fails with [`io::ErrorKind::TimedOut`]. A zero duration is
    /// an error, as in std.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.fd.set_timeout(Mode::Read, d)
    }

    /// Sets the timeout of each write.
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.fd.set_timeout(Mode::Write, d)
    }

    /// Closes the fd now, waking goroutines blocked on it with an error.
    /// Closing twice is an error. (Dropping the `Fd` also closes it.)
    pub fn close(&self) -> io::Result<()> {
        self.fd.close()
    }
}

impl Fd {
    fn read_fd(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.read(buf)
    }
    fn write_fd(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.write(buf)
    }
}

crate::fd::netfd_io_traits!(Fd);
