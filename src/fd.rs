//! `NetFd`: a non-blocking file descriptor registered with the netpoller,
//! and the loop every operation on it runs (Go's `internal/poll.FD`).
//!
//! # Operations
//!
//! An operation (read, write, accept, …) calls its syscall; on `EAGAIN` it
//! waits in the netpoller for the fd's readiness in that direction, then
//! tries again; `EINTR` just retries. One goroutine at a time may wait per
//! direction (the netpoller's semaphore has one slot), so operations of the
//! same direction take that direction's lock: two goroutines reading one
//! socket queue up, as in Go.
//!
//! # Closing
//!
//! `close(&self)` may race with operations in other goroutines (a listener
//! closed while a goroutine sits in `accept`). The fd number must not be
//! released while any of them could still pass it to a syscall — it could
//! name a newly opened file by then. So a reference count, with a closed
//! bit, guards it: every operation holds a reference; `close` sets the bit,
//! wakes the waiters (they fail with "closed"), and whoever drops the last
//! reference closes the fd for real and releases `csema`, on which `close`
//! waits. After `close`, new operations fail at once. Dropping a `NetFd`
//! closes it too (there are no references left then).

use crate::netpoll::{self, Mode, PollDesc};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `state`: the closed bit; the rest counts references.
const CLOSED: u64 = 1 << 63;

pub(crate) struct NetFd {
    fd: RawFd,
    pd: &'static PollDesc,
    state: AtomicU64,
    /// Serialise the operations of each direction (see the module docs).
    rlock: crate::sync::Mutex<()>,
    wlock: crate::sync::Mutex<()>,
    /// Per-operation timeouts in ns (0: none).
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    /// Released when the fd is really closed; `close` waits for it.
    csema: crate::sync::Sema,
}

/// One reference: the fd stays open while it lives.
struct FdRef<'a>(&'a NetFd);

impl Drop for FdRef<'_> {
    fn drop(&mut self) {
        self.0.decref();
    }
}

impl NetFd {
    /// Takes ownership of `fd`: makes it non-blocking and registers it.
    /// On error, `fd` is closed.
    pub(crate) fn new(fd: RawFd) -> io::Result<NetFd> {
        let reg = set_nonblocking(fd).and_then(|()| netpoll::open(fd));
        match reg {
            Ok(pd) => Ok(NetFd {
                fd,
                pd,
                state: AtomicU64::new(0),
                rlock: crate::sync::Mutex::new(()),
                wlock: crate::sync::Mutex::new(()),
                read_timeout: AtomicU64::new(0),
                write_timeout: AtomicU64::new(0),
                csema: crate::sync::Sema::new(),
            }),
            Err(e) => {
                // SAFETY: we own fd and nobody else saw it.
                unsafe { libc::close(fd) };
                Err(e)
            }
        }
    }

    /// The descriptor (valid until `close`).
    pub(crate) fn raw(&self) -> RawFd {
        self.fd
    }

    fn incref(&self) -> io::Result<FdRef<'_>> {
        self.add_ref(0)?;
        Ok(FdRef(self))
    }

    /// Takes a reference and sets `bits`, unless the fd is closed already.
    fn add_ref(&self, bits: u64) -> io::Result<()> {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur & CLOSED == 0).then_some((cur + 1) | bits)
            })
            .map(drop)
            .map_err(|_| netpoll::closed_error())
    }

    fn decref(&self) {
        if self.state.fetch_sub(1, Ordering::AcqRel) == CLOSED | 1 {
            self.destroy();
        }
    }

    fn destroy(&self) {
        netpoll::close(self.pd);
        // SAFETY: the last reference is gone and the closed bit keeps new
        // ones out: nobody uses the fd any more. close(2) is not retried on
        // EINTR (on Linux the fd is released regardless).
        unsafe { libc::close(self.fd) };
        self.csema.release(false);
    }

    /// Closes the fd: goroutines blocked on it wake with an error; returns
    /// once the last of them has left and the fd is closed for real (as
    /// Go's `Close`: a listener's port is free when it returns). A second
    /// close fails.
    pub(crate) fn close(&self) -> io::Result<()> {
        // Take a reference as we close, dropped below: so exactly one
        // decref sees the count reach zero.
        self.add_ref(CLOSED)?;
        netpoll::evict(self.pd);
        self.decref();
        self.csema.acquire(false, crate::g::WaitReason::IoWait);
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    pub(crate) fn set_timeout(&self, mode: Mode, d: Option<Duration>) -> io::Result<()> {
        let ns = match d {
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ))
            }
            Some(d) => d.as_nanos().clamp(1, u64::MAX as u128) as u64,
            None => 0,
        };
        self.timeout_word(mode).store(ns, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn timeout(&self, mode: Mode) -> Option<Duration> {
        match self.timeout_word(mode).load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    fn timeout_word(&self, mode: Mode) -> &AtomicU64 {
        match mode {
            Mode::Read => &self.read_timeout,
            Mode::Write => &self.write_timeout,
        }
    }

    /// Runs `op` on the fd until it does not report `EAGAIN`, waiting for
    /// `mode` readiness in between; the operation's timeout (if set) runs
    /// from now. `op` returns the syscall's result, negative with errno
    /// set on failure.
    pub(crate) fn io<T>(
        &self,
        mode: Mode,
        op: impl FnMut(RawFd) -> io::Result<T>,
    ) -> io::Result<T> {
        let deadline = self.timeout(mode).map(|d| Instant::now() + d);
        self.io_until(mode, deadline, op)
    }

    /// `io`, with an explicit deadline instead of the fd's timeout.
    pub(crate) fn io_until<T>(
        &self,
        mode: Mode,
        deadline: Option<Instant>,
        mut op: impl FnMut(RawFd) -> io::Result<T>,
    ) -> io::Result<T> {
        let _ref = self.incref()?;
        let _serial = match mode {
            Mode::Read => self.rlock.lock(),
            Mode::Write => self.wlock.lock(),
        };
        loop {
            // A close that came while we queued on the lock.
            if self.pd.is_closing() {
                return Err(netpoll::closed_error());
            }
            match op(self.fd) {
                Ok(v) => return Ok(v),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => netpoll::wait(self.pd, mode, deadline)?,
                    _ => return Err(e),
                },
            }
        }
    }

    /// Waits for `mode` readiness once (for `connect`), up to `deadline`.
    pub(crate) fn wait(&self, mode: Mode, deadline: Option<Instant>) -> io::Result<()> {
        let _ref = self.incref()?;
        netpoll::wait(self.pd, mode, deadline)
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io(Mode::Read, |fd| {
            // SAFETY: `buf` is valid for writes of its length.
            cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
        })
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.io(Mode::Write, |fd| {
            // SAFETY: `buf` is valid for reads of its length.
            cvt(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
        })
    }

    /// A new `NetFd` for a duplicate of the fd (`F_DUPFD_CLOEXEC`), with
    /// its own registration, locks and timeouts (std's `try_clone`). The
    /// kernel object lives until both are closed; closing one does not
    /// wake goroutines blocked on the other.
    pub(crate) fn try_clone(&self) -> io::Result<NetFd> {
        let dup = self.with(|fd| {
            // SAFETY: duplicates our open fd into a new descriptor.
            cvt_int(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) })
        })?;
        NetFd::new(dup)
    }

    /// Runs `f` with the fd while holding a reference (for getsockopt and
    /// the like, which never block).
    pub(crate) fn with<T>(&self, f: impl FnOnce(RawFd) -> io::Result<T>) -> io::Result<T> {
        let _ref = self.incref()?;
        f(self.fd)
    }
}

impl Drop for NetFd {
    fn drop(&mut self) {
        if !self.is_closed() {
            // We are the only user: this releases the fd at once.
            let _ = self.close();
        }
    }
}

impl std::fmt::Debug for NetFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetFd")
            .field("fd", &self.fd)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A syscall's return value as a Result (negative: errno).
pub(crate) fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `cvt` for syscalls returning c_int.
pub(crate) fn cvt_int(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    loop {
        // SAFETY: F_GETFL/F_SETFL on a descriptor the caller owns.
        let r = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        let r = match cvt_int(r) {
            Ok(flags) if flags & libc::O_NONBLOCK != 0 => return Ok(()),
            // SAFETY: F_SETFL on the same descriptor the caller owns; only adds
            // O_NONBLOCK to the flags just read.
            Ok(flags) => {
                cvt_int(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Implements `AsRawFd` (from the `fd: NetFd` field), and `Read`/`Write`
/// for the type and for a shared reference to it (several goroutines may
/// share one socket), through the type's `read_fd`/`write_fd` methods.
macro_rules! netfd_io_traits {
    ($t:ty) => {
        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.fd.raw()
            }
        }
        impl std::io::Read for $t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.read_fd(buf)
            }
        }
        impl std::io::Read for &$t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.read_fd(buf)
            }
        }
        impl std::io::Write for $t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.write_fd(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl std::io::Write for &$t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.write_fd(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}
pub(crate) use netfd_io_traits;
