//! Runtime configuration and start-up: `Builder`, the environment
//! (`GORT_MAXPROCS`, `GORT_DEBUG`), and the process-wide runtime handle.
//!
//! There is one runtime per process, as in Go. It starts on first use
//! (`gort::run`, with the environment's settings) or explicitly through
//! `Builder::start`. Configuring it a second time after it started is an
//! error, not a silent no-op: a program that asked for 1 proc and got 8
//! would misbehave in ways that are hard to trace.

use std::fmt;
use std::time::Duration;

/// The default goroutine stack size: 256 KiB of address space, of which
/// only the pages a goroutine touches use memory.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;
/// The smallest stack size accepted.
pub const MIN_STACK_SIZE: usize = 16 * 1024;
/// Go's forcePreemptNS: a goroutine running longer than this is preempted.
pub const DEFAULT_TIME_SLICE: Duration = Duration::from_millis(10);
/// The shortest time slice accepted.
pub const MIN_TIME_SLICE: Duration = Duration::from_micros(100);
/// Go's cap on the number of Ps.
pub const MAX_PROCS: usize = 1024;
/// Pooled goroutine stacks idle this long go back to the kernel.
pub const DEFAULT_SCAVENGE_AFTER: Duration = Duration::from_secs(5 * 60);
/// How often the maintenance goroutine runs (Go's forced-GC period).
pub const DEFAULT_MAINTENANCE_PERIOD: Duration = Duration::from_secs(2 * 60);
/// The default for `Builder::unannounced_handoff`: how long a goroutine
/// may sit in the kernel outside `syscall::blocking` before sysmon hands
/// its processor to another thread.
pub const DEFAULT_UNANNOUNCED_HANDOFF: Duration = Duration::from_micros(200);
/// The shortest unannounced handoff delay accepted.
pub const MIN_UNANNOUNCED_HANDOFF: Duration = Duration::from_micros(100);

/// The runtime's settings, fixed once it starts.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) procs: usize,
    pub(crate) stack_size: usize,
    pub(crate) time_slice: Duration,
    pub(crate) async_preempt: bool,
    pub(crate) scavenge_after: Duration,
    pub(crate) maintenance_period: Duration,
    pub(crate) on_deadlock: crate::deadlock::OnDeadlock,
    /// Hand off the P of a goroutine blocked in the kernel (unannounced)
    /// after this long; None: never.
    pub(crate) unannounced_handoff: Option<Duration>,
    pub(crate) debug: DebugFlags,
}

/// Settings from `GORT_DEBUG`.
#[derive(Clone, Debug, Default)]
pub(crate) struct DebugFlags {
    pub(crate) schedtrace_ms: u64,
    pub(crate) scheddetail: bool,
    pub(crate) asyncpreemptoff: bool,
    /// `blockwarn=MS`: report goroutines blocked in the kernel (outside
    /// `syscall::blocking`) longer than this.
    pub(crate) blockwarn_ms: Option<u64>,
    /// `blockhandoff=US`: the unannounced handoff delay (0: off).
    pub(crate) blockhandoff_us: Option<u64>,
}

/// Why the runtime could not be configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The runtime was already started (by `Builder::start` or by a first
    /// `gort::run`); its configuration cannot change.
    AlreadyStarted,
    /// An environment variable has a value gort cannot use.
    BadEnv {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    /// A `Builder` setting is out of range.
    BadSetting {
        setting: &'static str,
        value: String,
        expected: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AlreadyStarted => write!(
                f,
                "gort: the runtime is already started; configure it with Builder::start() \
                 before the first gort::run or spawn"
            ),
            Error::BadEnv {
                var,
                value,
                expected,
            } => {
                write!(
                    f,
                    "gort: bad environment variable {var}={value:?}: expected {expected}"
                )
            }
            Error::BadSetting {
                setting,
                value,
                expected,
            } => {
                write!(
                    f,
                    "gort: bad Builder setting {setting}({value}): expected {expected}"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// Configures and starts the runtime.
///
/// ```no_run
/// gort::Builder::new().procs(2).start().expect("configure gort");
/// let v = gort::run(|| 40 + 2);
/// assert_eq!(v, 42);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Builder {
    procs: Option<usize>,
    stack_size: Option<usize>,
    time_slice: Option<Duration>,
    async_preempt: Option<bool>,
    scavenge_after: Option<Duration>,
    maintenance_period: Option<Duration>,
    on_deadlock: Option<crate::deadlock::OnDeadlock>,
    unannounced_handoff: Option<Option<Duration>>,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Number of processors (Ps): how many goroutines run in parallel.
    /// Default: `GORT_MAXPROCS`, else the CPUs this process may use.
    pub fn procs(mut self, n: usize) -> Builder {
        self.procs = Some(n);
        self
    }

    /// Stack size of every goroutine, rounded up to whole pages. Address
    /// space only: memory is used as the stack is touched. Default 256 KiB.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// How long a goroutine may run before sysmon preempts it (default
    /// 10ms, minimum 100µs).
    pub fn time_slice(mut self, d: Duration) -> Builder {
        self.time_slice = Some(d);
        self
    }

    /// Whether sysmon may preempt goroutines by signal (default true,
    /// unless `GORT_DEBUG=asyncpreemptoff=1`).
    pub fn async_preempt(mut self, on: bool) -> Builder {
        self.async_preempt = Some(on);
        self
    }

    /// How long a pooled goroutine stack may stay idle before the
    /// scavenger returns its memory to the kernel (default 5 minutes).
    pub fn scavenge_after(mut self, d: Duration) -> Builder {
        self.scavenge_after = Some(d);
        self
    }

    /// How often sysmon starts the maintenance goroutine, which trims the
    /// runtime's caches and returns freed heap to the OS (default 2
    /// minutes; at least 10ms).
    pub fn maintenance_period(mut self, d: Duration) -> Builder {
        self.maintenance_period = Some(d);
        self
    }

    /// What happens when every goroutine is asleep and a thread waits in
    /// `gort::run`: panic in that thread (default) or, like Go, print the
    /// report and exit with code 2.
    pub fn on_deadlock(mut self, what: crate::deadlock::OnDeadlock) -> Builder {
        self.on_deadlock = Some(what);
        self
    }

    /// How long a goroutine may sit in the kernel without announcing it
    /// (a plain `std` call that blocks: file I/O, `std::thread::sleep`, a
    /// contended `std::sync::Mutex`, a blocking socket) before sysmon
    /// hands its processor to another thread, as it does for
    /// `syscall::blocking` (at least 100µs; default
    /// `DEFAULT_UNANNOUNCED_HANDOFF` = 200µs; `None` turns it off). Also
    /// `GORT_DEBUG=blockhandoff=US` (0 = off).
    pub fn unannounced_handoff(mut self, after: Option<Duration>) -> Builder {
        self.unannounced_handoff = Some(after);
        self
    }

    /// Checks the settings and the environment and returns the config.
    fn config(&self) -> Result<Config, Error> {
        let env = EnvConfig::read()?;
        let procs = self.procs.or(env.maxprocs).unwrap_or_else(default_procs);
        if procs == 0 || procs > MAX_PROCS {
            return Err(Error::BadSetting {
                setting: "procs",
                value: procs.to_string(),
                expected: format!("1 to {MAX_PROCS}"),
            });
        }
        let stack_size = self.stack_size.unwrap_or(DEFAULT_STACK_SIZE);
        if !(MIN_STACK_SIZE..=(1 << 30)).contains(&stack_size) {
            return Err(Error::BadSetting {
                setting: "stack_size",
                value: stack_size.to_string(),
                expected: format!("{MIN_STACK_SIZE} to {} bytes", 1 << 30),
            });
        }
        let time_slice = self.time_slice.unwrap_or(DEFAULT_TIME_SLICE);
        if time_slice < MIN_TIME_SLICE {
            return Err(Error::BadSetting {
                setting: "time_slice",
                value: format!("{time_slice:?}"),
                expected: format!("at least {MIN_TIME_SLICE:?}"),
            });
        }
        let async_preempt = self.async_preempt.unwrap_or(true) && !env.debug.asyncpreemptoff;
        let maintenance_period = self
            .maintenance_period
            .unwrap_or(DEFAULT_MAINTENANCE_PERIOD);
        if maintenance_period < Duration::from_millis(10) {
            return Err(Error::BadSetting {
                setting: "maintenance_period",
                value: format!("{maintenance_period:?}"),
                expected: "at least 10ms".to_string(),
            });
        }
        let unannounced_handoff = match (self.unannounced_handoff, env.debug.blockhandoff_us) {
            (Some(d), _) => d,
            (None, Some(0)) => None,
            (None, Some(us)) => Some(Duration::from_micros(us)),
            (None, None) => Some(DEFAULT_UNANNOUNCED_HANDOFF),
        };
        if unannounced_handoff.is_some_and(|d| d < MIN_UNANNOUNCED_HANDOFF) {
            return Err(Error::BadSetting {
                setting: "unannounced_handoff",
                value: format!("{unannounced_handoff:?}"),
                expected: format!("None or at least {MIN_UNANNOUNCED_HANDOFF:?}"),
            });
        }
        Ok(Config {
            procs,
            stack_size,
            time_slice,
            async_preempt,
            scavenge_after: self.scavenge_after.unwrap_or(DEFAULT_SCAVENGE_AFTER),
            maintenance_period,
            on_deadlock: self.on_deadlock.unwrap_or_default(),
            unannounced_handoff,
            debug: env.debug,
        })
    }

    /// Starts the runtime with these settings. Fails if a setting or the
    /// environment is bad, or if the runtime is already running.
    pub fn start(self) -> Result<Runtime, Error> {
        let config = self.config()?;
        let trace = crate::exectrace::from_env()?; // GORT_TRACE (exectrace)
        let started = crate::sched::start(config, || {
            crate::signal::install_handlers();
            crate::panics::install_hook();
            // sysmon waits for the scheduler itself (`wait_sched`).
            crate::sysmon::start();
        });
        if started {
            if let Some(t) = trace {
                crate::exectrace::start_from_env(t); // exectrace
            }
            Ok(Runtime { _private: () })
        } else {
            Err(Error::AlreadyStarted)
        }
    }
}

/// A handle on the started runtime.
#[derive(Clone, Copy, Debug)]
pub struct Runtime {
    _private: (),
}

impl Runtime {
    /// Same as [`crate::run`].
    #[track_caller]
    pub fn run<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: 'static,
    {
        crate::run(f)
    }

    /// Same as [`crate::spawn`].
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> crate::JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        crate::spawn(f)
    }

    /// Number of processors.
    pub fn procs(&self) -> usize {
        crate::sched::sched().procs()
    }
}

/// Starts the runtime from the environment if nobody has; panics with a
/// message naming the variable if the environment is bad.
pub(crate) fn ensure_started() {
    if crate::sched::started() {
        return;
    }
    match Builder::new().start() {
        Ok(_) | Err(Error::AlreadyStarted) => {}
        Err(e) => panic!("{e}"),
    }
}

struct EnvConfig {
    maxprocs: Option<usize>,
    debug: DebugFlags,
}

impl EnvConfig {
    fn read() -> Result<EnvConfig, Error> {
        let maxprocs = match std::env::var("GORT_MAXPROCS") {
            Ok(v) => Some(parse_maxprocs(&v)?),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(v)) => {
                return Err(Error::BadEnv {
                    var: "GORT_MAXPROCS",
                    value: v.to_string_lossy().into_owned(),
                    expected: "a whole number from 1 to 1024",
                })
            }
        };
        let debug = match std::env::var("GORT_DEBUG") {
            Ok(v) => parse_debug(&v)?,
            Err(_) => DebugFlags::default(),
        };
        if let Ok(v) = std::env::var("GORT_TRACEBACK") {
            crate::traceback::Level::parse(&v).map_err(|_| Error::BadEnv {
                var: "GORT_TRACEBACK",
                value: v.clone(),
                expected: "none, single, all or system",
            })?;
        }
        Ok(EnvConfig { maxprocs, debug })
    }
}

fn parse_maxprocs(v: &str) -> Result<usize, Error> {
    let bad = || Error::BadEnv {
        var: "GORT_MAXPROCS",
        value: v.to_string(),
        expected: "a whole number from 1 to 1024",
    };
    let n: usize = v.trim().parse().map_err(|_| bad())?;
    if n == 0 || n > MAX_PROCS {
        return Err(bad());
    }
    Ok(n)
}

/// Parses `GORT_DEBUG`: comma-separated `name=value` pairs, like GODEBUG.
pub(crate) fn parse_debug(v: &str) -> Result<DebugFlags, Error> {
    const EXPECTED: &str = "comma-separated settings: schedtrace=MS, scheddetail=0|1, \
                            asyncpreemptoff=0|1, blockwarn=MS, blockhandoff=US (0 or at least 100)";
    let bad = || Error::BadEnv {
        var: "GORT_DEBUG",
        value: v.to_string(),
        expected: EXPECTED,
    };
    let mut flags = DebugFlags::default();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) = item.split_once('=').ok_or_else(bad)?;
        let flag = |value: &str| match value {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(bad()),
        };
        match name {
            "schedtrace" => flags.schedtrace_ms = value.parse().map_err(|_| bad())?,
            "scheddetail" => flags.scheddetail = flag(value)?,
            "asyncpreemptoff" => flags.asyncpreemptoff = flag(value)?,
            "blockwarn" => flags.blockwarn_ms = Some(value.parse().map_err(|_| bad())?),
            "blockhandoff" => {
                let us: u64 = value.parse().map_err(|_| bad())?;
                if us != 0 && us < MIN_UNANNOUNCED_HANDOFF.as_micros() as u64 {
                    return Err(bad());
                }
                flags.blockhandoff_us = Some(us);
            }
            _ => return Err(bad()),
        }
    }
    Ok(flags)
}

fn default_procs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(MAX_PROCS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxprocs_values() {
        assert_eq!(parse_maxprocs("4"), Ok(4));
        assert_eq!(parse_maxprocs(" 2 "), Ok(2));
        for bad in ["0", "-1", "x", "", "2000", "1.5"] {
            let e = parse_maxprocs(bad).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("GORT_MAXPROCS"), "{msg}");
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        }
    }

    #[test]
    fn debug_values() {
        let f = parse_debug("schedtrace=1000,scheddetail=1").unwrap();
        assert_eq!(f.schedtrace_ms, 1000);
        assert!(f.scheddetail);
        assert!(!f.asyncpreemptoff);
        assert!(parse_debug("asyncpreemptoff=1").unwrap().asyncpreemptoff);
        assert!(parse_debug("").is_ok());
        let f = parse_debug("blockwarn=50,blockhandoff=0").unwrap();
        assert_eq!(f.blockwarn_ms, Some(50));
        assert_eq!(f.blockhandoff_us, Some(0));
        assert_eq!(
            parse_debug("blockhandoff=250").unwrap().blockhandoff_us,
            Some(250)
        );
        for bad in [
            "schedtrace",
            "schedtrace=x",
            "bogus=1",
            "scheddetail=2",
            "blockwarn=x",
            "blockhandoff=5",
        ] {
            let msg = parse_debug(bad).unwrap_err().to_string();
            assert!(msg.contains("GORT_DEBUG"), "{msg}");
        }
    }
}
