//! Goroutine-local storage: `gort::local!` and [`LocalKey`].
//!
//! Each goroutine (G) has a table of slots, one per key, filled on first
//! access; a key gets its slot index from a global counter the first time
//! any goroutine uses it. The values live in their own heap boxes, so a
//! reference handed to `with` stays put while the table grows, and they
//! move with the goroutine when it resumes on another thread. They are
//! dropped on the goroutine, when its function has returned (or
//! unwound), before `join` sees the result. On a plain thread (including
//! `spawn_blocking` tasks) the key has one value per thread, kept until
//! the thread exits, as `thread_local!`.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One initialised value: a `Box<T>` as a raw pointer, and how to drop it.
struct Slot {
    ptr: *mut u8,
    drop: unsafe fn(*mut u8),
}

/// A goroutine's (or plain thread's) table of values.
pub(crate) struct Locals {
    slots: Vec<Slot>,
}

impl Locals {
    pub(crate) const fn new() -> Locals {
        Locals { slots: Vec::new() }
    }

    /// Drops every value, including ones created by other values'
    /// destructors meanwhile. `this` is not borrowed across user code.
    ///
    /// # Safety
    /// `this` is the caller's own table, not borrowed elsewhere.
    unsafe fn clear(this: *mut Locals) {
        for _ in 0..64 {
            // SAFETY: our own table; the borrow ends before user code runs.
            let slots = std::mem::take(unsafe { &mut (*this).slots });
            if slots.is_empty() {
                return;
            }
            for s in slots {
                if !s.ptr.is_null() {
                    // SAFETY: `ptr` came from `Box::into_raw` of the type
                    // `drop` was made for, and is dropped once (taken).
                    unsafe { (s.drop)(s.ptr) };
                }
            }
        }
        crate::fatal("gort::local! values keep creating others while being dropped");
    }
}

impl Drop for Locals {
    fn drop(&mut self) {
        // SAFETY: we own the table (a thread's, at thread exit).
        unsafe { Locals::clear(self) };
    }
}

thread_local! {
    /// The values of a plain thread.
    static THREAD_LOCALS: UnsafeCell<Locals> = const { UnsafeCell::new(Locals::new()) };
}

/// The calling goroutine's table, or the plain thread's.
///
/// Out of line on purpose: finding the goroutine reads the M's TLS and
/// then its current G; inlined into user code, an async preemption
/// between the two could resume on another M and read *its* goroutine.
/// gort's own functions are never preempted by signal.
#[inline(never)]
fn current() -> *mut Locals {
    let gp = crate::sched::getg();
    if gp.is_null() {
        THREAD_LOCALS.with(|l| l.get())
    } else {
        // SAFETY: the current goroutine is alive while it runs, and only
        // it touches its table.
        unsafe { (*gp).locals.get() }
    }
}

/// Drops the calling goroutine's values (at its end, in its `Task::run`).
/// Does nothing on a plain thread.
pub(crate) fn end_goroutine() {
    let gp = crate::sched::getg();
    if gp.is_null() {
        return;
    }
    // SAFETY: the current goroutine is alive while it runs.
    let table = unsafe { (*gp).locals.get() };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: our own goroutine's table, not borrowed elsewhere.
        unsafe { Locals::clear(table) }
    }));
    if r.is_err() {
        // std aborts on a panicking thread-local destructor too.
        crate::fatal("a gort::local! value panicked while being dropped");
    }
}

static NEXT_INDEX: AtomicUsize = AtomicUsize::new(0);

/// A key for goroutine-local values, declared with
/// [`gort::local!`](crate::local!). Each goroutine sees its own value, made by the
/// initialiser on its first access and dropped when the goroutine ends.
///
/// Used like `std::thread::LocalKey`: [`with`](LocalKey::with), and for
/// `Cell` and `RefCell` values `get`/`set`/`take`/`replace`.
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
    /// Slot index + 1; 0 until first used.
    index: AtomicUsize,
}

impl<T: 'static> LocalKey<T> {
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> LocalKey<T> {
        LocalKey {
            init,
            index: AtomicUsize::new(0),
        }
    }

    /// Calls `f` with a reference to this goroutine's value, making it
    /// first if needed. The reference stays valid across yields,
    /// preemptions and moves to other threads inside `f`.
    #[inline(always)]
    pub fn with<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&T) -> R,
    {
        let p = self.ptr();
        // SAFETY: the value is boxed in the current goroutine's table and
        // freed only when the goroutine ends (not while `f` runs); only
        // shared references to it are ever handed out.
        f(unsafe { &*p })
    }

    #[inline]
    fn ptr(&'static self) -> *const T {
        let i = self.index.load(Ordering::Relaxed);
        if i != 0 {
            let locals = current();
            // SAFETY: the caller's own table; the shared borrow ends here.
            let slots: &Vec<Slot> = unsafe { &(*locals).slots };
            if let Some(s) = slots.get(i - 1) {
                if !s.ptr.is_null() {
                    return s.ptr as *const T;
                }
            }
        }
        self.init_slow()
    }

    #[cold]
    #[inline(never)]
    fn init_slow(&'static self) -> *const T {
        let i = match self.index.load(Ordering::Acquire) {
            0 => {
                let new = NEXT_INDEX.fetch_add(1, Ordering::Relaxed) + 1;
                match self
                    .index
                    .compare_exchange(0, new, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => new,
                    Err(other) => other,
                }
            }
            i => i,
        } - 1;
        // User code: may use other keys (or this one) and move threads.
        let value = Box::into_raw(Box::new((self.init)()));
        let locals = current();
        // SAFETY: the caller's own table; no user code runs while the
        // mutable borrow lives.
        let slots = unsafe { &mut (*locals).slots };
        if slots.len() <= i {
            slots.resize_with(i + 1, || Slot {
                ptr: std::ptr::null_mut(),
                drop: drop_nothing,
            });
        }
        if slots[i].ptr.is_null() {
            slots[i] = Slot {
                ptr: value as *mut u8,
                drop: drop_box::<T>,
            };
            return value;
        }
        // The initialiser used this key itself: keep the value it made.
        let existing = slots[i].ptr as *const T;
        // SAFETY: `value` came from Box::into_raw above and was not shared.
        drop(unsafe { Box::from_raw(value) });
        existing
    }
}

/// # Safety
/// `p` comes from `Box::<T>::into_raw` and is dropped once.
unsafe fn drop_box<T>(p: *mut u8) {
    // SAFETY: as the function's contract says.
    drop(unsafe { Box::from_raw(p as *mut T) });
}

/// # Safety
/// Never called with a value (placeholder of empty slots).
unsafe fn drop_nothing(_: *mut u8) {}

impl<T: 'static> LocalKey<Cell<T>> {
    /// Sets this goroutine's value.
    pub fn set(&'static self, value: T) {
        self.with(|c| c.set(value))
    }

    /// A copy of this goroutine's value.
    pub fn get(&'static self) -> T
    where
        T: Copy,
    {
        self.with(|c| c.get())
    }

    /// Takes this goroutine's value, leaving `Default::default()`.
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(|c| c.take())
    }

    /// Replaces this goroutine's value, returning the old one.
    pub fn replace(&'static self, value: T) -> T {
        self.with(|c| c.replace(value))
    }
}

impl<T: 'static> LocalKey<RefCell<T>> {
    /// Calls `f` with a shared borrow of this goroutine's value.
    ///
    /// # Panics
    /// If the value is mutably borrowed.
    pub fn with_borrow<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&T) -> R,
    {
        self.with(|c| f(&c.borrow()))
    }

    /// Calls `f` with a mutable borrow of this goroutine's value.
    ///
    /// # Panics
    /// If the value is borrowed.
    pub fn with_borrow_mut<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&mut T) -> R,
    {
        self.with(|c| f(&mut c.borrow_mut()))
    }

    /// Sets this goroutine's value.
    pub fn set(&'static self, value: T) {
        self.with(|c| {
            *c.borrow_mut() = value;
        })
    }

    /// Takes this goroutine's value, leaving `Default::default()`.
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(|c| c.take())
    }

    /// Replaces this goroutine's value, returning the old one.
    pub fn replace(&'static self, value: T) -> T {
        self.with(|c| c.replace(value))
    }
}

impl<T: 'static> std::fmt::Debug for LocalKey<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKey").finish_non_exhaustive()
    }
}

/// Declares goroutine-local values, like `std::thread_local!`: each
/// goroutine that uses the key gets its own value, made on first use and
/// dropped when the goroutine ends. Unlike a `thread_local!`, the value
/// follows the goroutine when it moves to another OS thread, and other
/// goroutines on the same thread do not see it.
///
/// ```no_run
/// use std::cell::{Cell, RefCell};
///
/// gort::local! {
///     static REQUESTS: Cell<u64> = Cell::new(0);
///     pub static LOG: RefCell<Vec<String>> = RefCell::new(Vec::new());
/// }
///
/// gort::run(|| {
///     REQUESTS.set(REQUESTS.get() + 1);
///     gort::yield_now(); // may resume on another thread: still ours
///     assert_eq!(REQUESTS.get(), 1);
///     LOG.with_borrow_mut(|v| v.push("done".into()));
///     let other = gort::spawn(|| REQUESTS.get()).join().unwrap();
///     assert_eq!(other, 0); // a fresh value in the other goroutine
/// });
/// ```
///
/// On a plain thread (including a `spawn_blocking` task) the key has one
/// value per thread, kept until the thread exits.
#[macro_export]
macro_rules! local {
    () => {};
    // `= const { .. }` as `thread_local!` allows (the value is made on
    // first use either way).
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const $init:block; $($rest:tt)*) => {
        $crate::local!($(#[$attr])* $vis static $name: $t = $init);
        $crate::local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const $init:block) => {
        $crate::local!($(#[$attr])* $vis static $name: $t = $init);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $crate::local!($(#[$attr])* $vis static $name: $t = $init);
        $crate::local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $(#[$attr])*
        $vis static $name: $crate::LocalKey<$t> = $crate::LocalKey::new({
            fn __gort_local_init() -> $t {
                $init
            }
            __gort_local_init
        });
    };
}
