//! OS threads for the runtime: creating them (Ms, sysmon and helpers, with
//! every signal blocked while the thread starts), naming them, and ending
//! the process at once on a fatal error (docs/design.md, "Threads").

/// Creates a detached pthread running `start(arg)` with every signal
/// blocked during creation (the new thread unblocks them in `minit`).
pub(crate) fn spawn_thread(
    stack_size: usize,
    start: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    arg: *mut libc::c_void,
) {
    // SAFETY: plain libc calls on locally owned, initialised structures.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, stack_size);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        let mut tid: libc::pthread_t = std::mem::zeroed();
        let r = libc::pthread_create(&mut tid, &attr, start, arg);
        libc::pthread_attr_destroy(&mut attr);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if r != 0 {
            crate::fatal(&format!(
                "cannot create an OS thread for the runtime: {}",
                std::io::Error::from_raw_os_error(r)
            ));
        }
    }
}

/// Names the calling thread (shown by gdb, perf, top -H).
pub(crate) fn set_thread_name(name: &str) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: `buf` is NUL-terminated and at most 16 bytes, as required.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), buf.as_ptr() as *const libc::c_char) };
}

/// Ends the process with `code` at once, as Go's fatal exits do: flushes
/// Rust's stdout buffer, then `_exit`. Not `process::exit`: its atexit
/// handlers and TLS teardown would run while other Ms still run goroutines,
/// which can crash them (a dump that ended in a signal instead of code 2).
pub(crate) fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().lock().flush();
    // SAFETY: _exit has no preconditions; it does not return.
    unsafe { libc::_exit(code) }
}

/// The calling thread's kernel id (the `tgkill` target).
pub(crate) fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}
