//! Scoped goroutines (`gort::scope`, like `std::thread::scope`) and spawn
//! options (`gort::Spawn`).
//!
//! A scoped goroutine's closure may borrow from outside the scope because
//! `scope` does not return before every goroutine spawned in it has ended
//! *and* dropped everything that borrows: the closure (consumed by the
//! call) and its result, which lives in a packet shared with the handle.
//! The packet's `Drop` is what tells the scope (a `WaitGroup`), so the
//! result is gone by then too (std's design).

use crate::join::JoinHandle;
use crate::sync::WaitGroup;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Options for one goroutine: a name (shown in dumps, deadlock and
/// timeout reports, and in the line gort prints before a goroutine's
/// panic message) and a stack size.
///
/// ```no_run
/// gort::run(|| {
///     let h = gort::Spawn::new()
///         .name("worker-3")
///         .stack_size(4 << 20) // deep recursion ahead
///         .spawn(|| 6 * 7);
///     assert_eq!(h.join().unwrap(), 42);
/// });
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a Spawn does nothing until .spawn() is called"]
pub struct Spawn {
    name: Option<Arc<str>>,
    stack_size: Option<usize>,
}

impl Spawn {
    /// Default options (no name).
    pub fn new() -> Spawn {
        Spawn::default()
    }

    /// Names the goroutine.
    pub fn name(mut self, name: impl Into<String>) -> Spawn {
        self.name = Some(Arc::from(name.into()));
        self
    }

    /// The goroutine's stack size in bytes (address space, committed as
    /// it is touched), rounded up to whole pages; at least
    /// [`MIN_STACK_SIZE`](crate::MIN_STACK_SIZE), at most 1 GiB. Default:
    /// the runtime's (`Builder::stack_size`, 256 KiB). Stacks of the
    /// runtime's size come from per-processor caches; other sizes from a
    /// pool per size, a little slower to get.
    pub fn stack_size(mut self, bytes: usize) -> Spawn {
        self.stack_size = Some(bytes);
        self
    }

    /// The stack size for `newproc`: 0 for the runtime's.
    #[track_caller]
    fn stack_bytes(&self) -> usize {
        match self.stack_size {
            None => 0,
            Some(b) if b > 1 << 30 => {
                panic!("gort::Spawn::stack_size({b}): at most 1 GiB (1073741824 bytes)")
            }
            Some(b) => crate::stack::round_size(b.max(crate::MIN_STACK_SIZE)),
        }
    }

    /// Spawns `f` with these options, as [`gort::spawn`](crate::spawn).
    ///
    /// # Panics
    /// If the stack size is over 1 GiB.
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        crate::runtime::ensure_started();
        let stack = self.stack_bytes();
        crate::join::spawn_at(f, Location::caller(), self.name, stack)
    }

    /// Spawns `f` in `scope` with these options, as [`Scope::spawn`].
    #[track_caller]
    pub fn spawn_scoped<'scope, 'env, F, T>(
        self,
        scope: &'scope Scope<'scope, 'env>,
        f: F,
    ) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let stack = self.stack_bytes();
        scope.spawn_named(f, Location::caller(), self.name, stack)
    }
}

/// Runs `f` with a [`Scope`] in which goroutines may borrow non-`'static`
/// data, like `std::thread::scope`. Every goroutine spawned in the scope
/// has ended when `scope` returns.
///
/// In a goroutine the wait parks the goroutine; on a plain thread it
/// blocks the thread.
///
/// ```no_run
/// gort::run(|| {
///     let mut data = vec![1, 2, 3];
///     let total: i32 = data.iter().sum();
///     gort::scope(|s| {
///         s.spawn(|| assert_eq!(data.len(), 3)); // borrows
///         let h = s.spawn(|| data.iter().map(|x| x * 2).sum::<i32>());
///         assert_eq!(h.join().unwrap(), 2 * total);
///     });
///     data.push(4); // the borrows have ended
/// });
/// ```
///
/// # Panics
/// If `f` panics (after every goroutine has ended), or if a goroutine of
/// the scope panicked and was not joined: `a scoped goroutine panicked`.
#[track_caller]
pub fn scope<'env, F, R>(f: F) -> R
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    crate::runtime::ensure_started();
    let data = Arc::new(ScopeData {
        running: WaitGroup::new(),
        panicked: AtomicBool::new(false),
    });
    let scope = Scope {
        data: data.clone(),
        _scope: PhantomData,
        _env: PhantomData,
    };
    let r = panic::catch_unwind(AssertUnwindSafe(|| f(&scope)));
    data.running.wait();
    match r {
        Err(payload) => panic::resume_unwind(payload),
        Ok(_) if data.panicked.load(Ordering::Acquire) => {
            panic!("a scoped goroutine panicked")
        }
        Ok(v) => v,
    }
}

struct ScopeData {
    /// Goroutines whose packet is still alive.
    running: WaitGroup,
    /// A goroutine panicked and nobody joined it.
    panicked: AtomicBool,
}

/// A scope to spawn goroutines in; see [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    data: Arc<ScopeData>,
    // Invariant in both lifetimes, as std's.
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawns a goroutine that may borrow from outside the scope; it is
    /// joined when the scope ends if not before.
    #[track_caller]
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        self.spawn_named(f, Location::caller(), None, 0)
    }

    fn spawn_named<F, T>(
        &'scope self,
        f: F,
        site: &'static Location<'static>,
        name: Option<Arc<str>>,
        stack_size: usize,
    ) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let packet = Arc::new(ScopedPacket {
            result: Mutex::new(None),
            scope: self.data.clone(),
        });
        let theirs = packet.clone();
        self.data.running.add(1);
        let main = move || {
            let r = panic::catch_unwind(AssertUnwindSafe(f));
            *theirs.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            // Maybe the last reference: then the result drops here and
            // the scope learns that this goroutine is done with its
            // borrows.
            drop(theirs);
        };
        let main: Box<dyn FnOnce() + Send + 'scope> = Box::new(main);
        // SAFETY: `scope` waits until every packet is dropped, which the
        // goroutine does only after `main`'s closure (all its borrows) is
        // consumed; so the borrows outlive every use of them. Only the
        // lifetime changes, not the type.
        let main: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(main) };
        let inner = crate::join::spawn_at(main, site, name, stack_size);
        ScopedJoinHandle {
            inner,
            packet,
            _scope: PhantomData,
        }
    }
}

impl std::fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("running", &self.data.running.count())
            .finish()
    }
}

struct ScopedPacket<T> {
    result: Mutex<Option<std::thread::Result<T>>>,
    scope: Arc<ScopeData>,
}

impl<T> Drop for ScopedPacket<T> {
    fn drop(&mut self) {
        let r = self.result.get_mut().unwrap_or_else(|e| e.into_inner());
        if matches!(r, Some(Err(_))) {
            self.scope.panicked.store(true, Ordering::Release);
        }
        // Drop the result (which may borrow) before telling the scope.
        *r = None;
        self.scope.running.done();
    }
}

/// A handle to join a scoped goroutine; see [`Scope::spawn`].
pub struct ScopedJoinHandle<'scope, T> {
    inner: JoinHandle<()>,
    packet: Arc<ScopedPacket<T>>,
    _scope: PhantomData<&'scope ()>,
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the goroutine and returns its result, or its panic
    /// payload (a joined panic does not make the scope panic).
    pub fn join(self) -> std::thread::Result<T> {
        // The goroutine catches its closure's panic itself.
        let _ = self.inner.join();
        let r = self
            .packet
            .result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match r {
            Some(r) => r,
            None => crate::fatal("scoped goroutine ended without a result"),
        }
    }

    /// The goroutine's id.
    pub fn id(&self) -> u64 {
        self.inner.id()
    }

    /// Whether the goroutine has ended.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

impl<T> std::fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("id", &self.id())
            .finish()
    }
}
