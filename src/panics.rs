//! Panic messages that name their goroutine.
//!
//! std's hook names the OS thread (`thread '<unnamed>' panicked`), which
//! says nothing about a goroutine: gort installs a hook, once, when the
//! runtime starts, that prints `goroutine N panicked at file:line:col:`
//! (`goroutine N "name" panicked …` for a goroutine named with `Spawn`)
//! and the message for panics on goroutines, and hands every other panic to
//! the hook that was installed before (std's, or the program's).
//!
//! # The main goroutine of `run`
//!
//! Its panic comes out of `run` on the calling thread. So that the message
//! is printed once, and where the caller's output goes (cargo test captures
//! a test thread's output and shows it under the test's name), the hook
//! does not print it on the goroutine's M: it keeps the text, and `run`
//! prints it from its own thread as it re-raises the panic.

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, Once};

/// Texts of main-goroutine panics, by goroutine id, until `run` takes them.
static MAIN_PANICS: Mutex<Option<HashMap<u64, String>>> = Mutex::new(None);

thread_local! {
    /// Set by `rethrow` on the thread calling `run`: the text the hook
    /// prints instead of its own for the re-raised panic.
    static RETHROWING: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The text of a panic payload, if it is one of the two types `panic!`
/// makes (`&'static str` or `String`).
///
/// Handy with [`JoinHandle::join`](crate::JoinHandle::join), whose error
/// is the panic's payload:
///
/// ```
/// let r = gort::run(|| gort::spawn(|| panic!("no {}", "luck")).join());
/// let payload = r.unwrap_err();
/// assert_eq!(gort::panic_message(&*payload), Some("no luck"));
/// ```
pub fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// Installs the hook (once per process).
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(text) = RETHROWING.with(|r| r.borrow_mut().take()) {
                // `run` re-raising its main goroutine's panic: print the
                // goroutine's own text here, on the caller's thread, with
                // `eprint!` (which cargo test captures for the test).
                eprint!("{text}");
                return;
            }
            let Some(g) = crate::sched::current_g() else {
                return prev(info);
            };
            if info.payload().is::<crate::Exit>() {
                return; // gort::exit unwinding: not a failure
            }
            let mut text = String::new();
            let msg = panic_message(info.payload()).unwrap_or("Box<dyn Any>");
            let name = crate::trace::name_of(g);
            let at = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
            let _ = write!(text, "goroutine {}{name} panicked{at}:\n{msg}\n", g.id());
            // A `#[gort::test]` lists its goroutines' panics in its failure.
            crate::group::panicked(g.group.load(Ordering::Relaxed), || {
                format!("goroutine {}{name} panicked{at}: {msg}", g.id())
            });
            let bt = std::backtrace::Backtrace::capture();
            match bt.status() {
                std::backtrace::BacktraceStatus::Captured => match symbolize(bt) {
                    Ok(bt) => {
                        let _ = write!(text, "stack backtrace:\n{}", trim_backtrace(&bt));
                    }
                    Err(e) => {
                        let _ = writeln!(text, "stack backtrace: not available ({e})");
                    }
                },
                _ => text.push_str(
                    "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
                ),
            }
            if g.run_main.get() {
                MAIN_PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert_with(HashMap::new)
                    .insert(g.id(), text);
            } else {
                let _ = std::io::stderr().write_all(text.as_bytes());
            }
        }));
    });
}

/// Stack for `symbolize`'s thread: std's symbolizer (DWARF through gimli)
/// needs tens of KiB.
const SYMBOLIZE_STACK: usize = 1 << 20;

/// Turns a captured backtrace into text on a plain thread with a stack of
/// its own. Capturing walks the goroutine's stack and needs little room;
/// resolving names and lines needs far more than a small goroutine stack
/// has (a panic on a 16 KiB stack with `RUST_BACKTRACE=1` overflowed
/// it). A panic is rare, so a thread per backtrace is fine; the goroutine
/// blocks in `join` meanwhile, and sysmon hands its P off if that takes
/// long.
fn symbolize(bt: std::backtrace::Backtrace) -> std::io::Result<String> {
    std::thread::Builder::new()
        .name("gort-backtrace".into())
        .stack_size(SYMBOLIZE_STACK)
        .spawn(move || bt.to_string())?
        .join()
        .map_err(|_| std::io::Error::other("the symbolizer panicked"))
}

/// Drops the frames of the hook and of std's panic machinery from the top
/// of a captured backtrace, so it starts at the code that panicked.
fn trim_backtrace(bt: &str) -> &str {
    const MACHINERY: [&str; 4] = [
        "rust_begin_unwind",
        "core::panicking::",
        "std::panicking::",
        "__rust_end_short_backtrace",
    ];
    // Frame lines look like "   3: name"; their "at file:line" lines follow.
    let mut cut = 0;
    let mut at = 0;
    for line in bt.split_inclusive('\n') {
        let t = line.trim_start();
        let is_frame = t
            .split_once(": ")
            .is_some_and(|(n, _)| n.parse::<u32>().is_ok());
        if is_frame && at > 0 && !MACHINERY.iter().any(|m| t.contains(m)) && cut > 0 {
            break;
        }
        if is_frame && MACHINERY.iter().any(|m| t.contains(m)) {
            cut = at + line.len();
        } else if !is_frame && cut == at {
            cut = at + line.len(); // the "at" line of a dropped frame
        }
        at += line.len();
    }
    &bt[cut..]
}

/// Marks the calling goroutine as the main goroutine of a `run`.
pub(crate) fn mark_run_main() {
    // run_main is the goroutine's own field.
    if let Some(g) = crate::sched::current_g() {
        g.run_main.set(true);
    }
}

/// Clears the mark when the G is reused for another goroutine.
pub(crate) fn unmark(g: &crate::g::G) {
    g.run_main.set(false);
}

/// Re-raises on `run`'s thread the panic of its main goroutine `id`,
/// printing the goroutine's message there (see the module docs).
pub(crate) fn rethrow(id: u64, payload: Box<dyn Any + Send>) -> ! {
    let text = MAIN_PANICS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(|m| m.remove(&id));
    let Some(text) = text else {
        std::panic::resume_unwind(payload)
    };
    // Re-raise with `panic_any` (which runs the hook, so the text is
    // printed on this thread) for the payload types `panic!` makes, keeping
    // their type; other payloads go through `resume_unwind` unchanged.
    let payload = match payload.downcast::<String>() {
        Ok(s) => {
            RETHROWING.with(|r| *r.borrow_mut() = Some(text));
            std::panic::panic_any(*s)
        }
        Err(p) => p,
    };
    match payload.downcast::<&'static str>() {
        Ok(s) => {
            RETHROWING.with(|r| *r.borrow_mut() = Some(text));
            std::panic::panic_any(*s)
        }
        Err(p) => {
            eprint!("{text}");
            std::panic::resume_unwind(p)
        }
    }
}
