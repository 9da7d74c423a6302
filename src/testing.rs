//! Support for `#[gort::test]` (not public API: the macro's expansion
//! calls it through `gort::__private`).

use std::panic::{self, Location};
use std::time::Duration;

/// The options of one `#[gort::test(...)]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TestOptions {
    pub procs: Option<usize>,
    pub time_slice: Option<Duration>,
    pub timeout: Option<Duration>,
}

/// Runs a test body as a main goroutine (its own group, so its own
/// deadlock check). Panics with the body's panic message, a deadlock
/// report, or a timeout report with the group's goroutines.
#[track_caller]
pub fn test_run<F, T>(opts: TestOptions, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: 'static,
{
    configure(&opts);
    let site = Location::caller();
    let group = crate::group::Group::new();
    crate::group::keep_panics(group.id);
    let r = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        crate::join::run_within(f, site, group, opts.timeout)
    }));
    // The messages of the test's goroutines that panicked: a joined
    // panic's payload comes back as `Box<dyn Any>`, whose unwrap says
    // only `Any { .. }`.
    let panics = crate::group::take_panics(group.id);
    let mut also = String::new();
    for p in &panics {
        also.push('\n');
        also.push_str(p);
    }
    match r {
        Ok(Ok(v)) => v,
        Ok(Err(report)) => panic!("gort::test {report}"),
        Err(payload) => {
            // Re-panic on the test's own thread with the message, so the
            // test harness shows it with the test's output (the goroutine
            // printed it on its M, outside the capture).
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()));
            match msg {
                Some(m) if panics.iter().any(|p| p.ends_with(&m)) && panics.len() == 1 => {
                    panic!("{m}")
                }
                Some(m) if panics.is_empty() => panic!("{m}"),
                Some(m) => panic!("{m}\n\npanics in this test's goroutines:{also}"),
                None => panic::resume_unwind(payload),
            }
        }
    }
}

/// Starts the runtime with the test's settings, or checks that the
/// running one has them.
fn configure(opts: &TestOptions) {
    if opts.procs.is_none() && opts.time_slice.is_none() {
        crate::runtime::ensure_started();
        return;
    }
    let mut b = crate::Builder::new();
    if let Some(n) = opts.procs {
        b = b.procs(n);
    }
    if let Some(d) = opts.time_slice {
        b = b.time_slice(d);
    }
    match b.start() {
        Ok(_) => {}
        Err(crate::Error::AlreadyStarted) => {
            let s = crate::sched::sched();
            let procs_ok = opts.procs.is_none_or(|n| n == s.procs());
            let slice_ok = opts.time_slice.is_none_or(|d| d == s.config().time_slice);
            if !(procs_ok && slice_ok) {
                panic!(
                    "gort::test: the runtime of this process already runs with procs = {}, \
                     time_slice = {:?}, but this test asks for {:?}: there is one runtime per \
                     process, so give every test of this test binary the same settings, or \
                     put this test in its own binary (tests/<name>.rs)",
                    s.procs(),
                    s.config().time_slice,
                    opts
                );
            }
        }
        Err(e) => panic!("{e}"),
    }
}
