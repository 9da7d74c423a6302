//! Procedural macros re-exported by `gort`.

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::visit_mut::{self, VisitMut};
use syn::{parse_macro_input, ItemFn, ReturnType};

/// Runs `fn main` as the main goroutine: the body becomes the closure given
/// to `gort::run`, so the program ends when it returns. `main` may return
/// anything `fn main` may, `Result<(), Box<dyn Error>>` included (the
/// result need not be `Send`).
///
/// ```ignore
/// #[gort::main]
/// fn main() {
///     let h = gort::spawn(|| 1 + 1);
///     assert_eq!(h.join().unwrap(), 2);
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    // On misuse: the error, plus an empty `fn main() {}` so that the
    // error is the only one (not also "`main` function not found").
    let misuse = |e: syn::Error| -> TokenStream {
        let e = e.to_compile_error();
        quote!(#e fn main() {}).into()
    };
    if !args.is_empty() {
        let msg = "#[gort::main] takes no arguments; configure the runtime with GORT_MAXPROCS \
                   or gort::Builder";
        return misuse(syn::Error::new(proc_macro2::Span::call_site(), msg));
    }
    let f = parse_macro_input!(item as ItemFn);
    if f.sig.asyncness.is_some() || !f.sig.inputs.is_empty() || !f.sig.generics.params.is_empty() {
        return misuse(syn::Error::new_spanned(
            &f.sig,
            "#[gort::main] expects a plain `fn main()` (not async, no arguments, no generics)",
        ));
    }
    let attrs = &f.attrs;
    let vis = &f.vis;
    let sig = &f.sig;
    let body = &f.block;
    let ret = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, t) => quote!(#t),
    };
    // Spanned at `main`'s name: `run` records its caller as the main
    // goroutine's spawn site, which should be the function, not the
    // attribute line.
    let run = quote_spanned! {sig.ident.span()=>
        ::gort::run(move || -> #ret #body)
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #run
        }
    }
    .into()
}

/// Runs a test as a main goroutine, like `#[tokio::test]`: the body is
/// the closure given to `gort::run`, in its own goroutine group.
///
/// ```ignore
/// #[gort::test]
/// fn ping_pong() {
///     let (tx, rx) = gort::chan::channel(0);
///     gort::spawn(move || tx.send(1).unwrap());
///     assert_eq!(rx.recv().unwrap(), 1);
/// }
///
/// #[gort::test(procs = 2, time_slice = "1ms", timeout = "10s")]
/// fn with_options() -> Result<(), Box<dyn std::error::Error>> {
///     Ok(())
/// }
/// ```
///
/// - A panic of the body, or of a goroutine it joined with
///   `.join().unwrap()`, fails the test with its message (`should_panic`
///   works as usual).
/// - If the test's goroutines all block for good, the test fails with
///   `all goroutines are asleep - deadlock!` and a dump of them, whatever
///   other tests do.
/// - `timeout = "10s"` (units `us`, `ms`, `s`): the test fails after that
///   long with a dump of its goroutines (which are left running).
/// - `procs = N` and `time_slice = "D"` configure the runtime, of which
///   there is one per process: the first test to start it sets them, and
///   a test asking for other values than the running ones fails with a
///   message saying so. Give every test of a test binary the same
///   settings, or put such tests in their own binary.
///
/// The body may return `()` or any `Result` a `#[test]` may return (it
/// need not be `Send`).
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    match test_impl(args.into(), item.into()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn test_impl(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let f: ItemFn = syn::parse2(item)?;
    if f.sig.asyncness.is_some() || !f.sig.inputs.is_empty() || !f.sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &f.sig,
            "#[gort::test] expects a plain `fn name()` (not async, no arguments, no generics)",
        ));
    }
    let metas = syn::parse::Parser::parse2(
        syn::punctuated::Punctuated::<syn::MetaNameValue, syn::Token![,]>::parse_terminated,
        args,
    )?;
    let mut procs = quote!(::core::option::Option::None);
    let mut time_slice = quote!(::core::option::Option::None);
    let mut timeout = quote!(::core::option::Option::None);
    for m in metas {
        let key = m
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match key.as_str() {
            "procs" => {
                let n: syn::LitInt = lit(&m.value)?;
                let n: usize = n.base10_parse()?;
                procs = quote!(::core::option::Option::Some(#n));
            }
            "time_slice" | "timeout" => {
                let s: syn::LitStr = lit(&m.value)?;
                let ns = parse_duration(&s)?;
                let d = quote!(::core::option::Option::Some(
                    ::std::time::Duration::from_nanos(#ns)
                ));
                if key == "timeout" {
                    timeout = d;
                } else {
                    time_slice = d;
                }
            }
            _ => {
                return Err(syn::Error::new_spanned(
                    &m.path,
                    "unknown #[gort::test] option: expected procs = N, time_slice = \"D\" \
                     or timeout = \"D\" (D like \"500us\", \"10ms\", \"5s\")",
                ))
            }
        }
    }
    let attrs = &f.attrs;
    let vis = &f.vis;
    let sig = &f.sig;
    let body = &f.block;
    let ret = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, t) => quote!(#t),
    };
    // Spanned at the test's name, as in `main`.
    let run = quote_spanned! {sig.ident.span()=>
        ::gort::__private::test_run(
            ::gort::__private::TestOptions {
                procs: #procs,
                time_slice: #time_slice,
                timeout: #timeout,
            },
            move || -> #ret #body,
        )
    };
    Ok(quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis #sig {
            #run
        }
    })
}

fn lit<T: syn::parse::Parse>(e: &syn::Expr) -> syn::Result<T> {
    match e {
        syn::Expr::Lit(l) => syn::parse2(quote!(#l)),
        _ => Err(syn::Error::new_spanned(e, "expected a literal")),
    }
}

/// "500us", "10ms", "5s" as nanoseconds.
fn parse_duration(s: &syn::LitStr) -> syn::Result<u64> {
    let v = s.value();
    let v = v.trim();
    let bad = || {
        syn::Error::new_spanned(
            s,
            format!(
                "`{v}` is not a duration: expected a whole number and a unit (us, ms or s), \
                 like \"500us\", \"10ms\" or \"5s\""
            ),
        )
    };
    let (num, mult) = if let Some(n) = v.strip_suffix("us") {
        (n, 1_000u64)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1_000_000)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1_000_000_000)
    } else {
        return Err(bad());
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)
}

/// Makes a function preemptible at cooperative safe points: it injects
/// `::gort::preempt::check();` as the first statement of the function body
/// and of the body of every loop in it (`loop`, `while`, `while let`,
/// `for`), nested loops included, wherever they are: in blocks, `if` and
/// `match` arms, and closures defined in the function (their loops run as
/// part of this code).
///
/// The check costs one TLS load and one comparison. On a goroutine it
/// yields if sysmon asked the goroutine to stop (so a tight loop cannot
/// starve the others even with asynchronous preemption off), and ends the
/// process with `goroutine N stack overflow` when the stack is about to
/// run out, before the guard page is hit. Outside goroutines it does
/// nothing.
///
/// ```ignore
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// #[gort::preemptible]
/// fn spin(stop: &AtomicBool) -> u64 {
///     let mut n = 0u64;
///     // becomes: while .. { ::gort::preempt::check(); n = n.wrapping_add(1); }
///     while !stop.load(Ordering::Relaxed) {
///         n = n.wrapping_add(1);
///     }
///     n
/// }
///
/// struct Grid(Vec<Vec<u32>>);
///
/// impl Grid {
///     #[gort::preemptible] // methods work too
///     fn first_above(&mut self, limit: u32) -> Option<(usize, usize)> {
///         'rows: for (i, row) in self.0.iter().enumerate() {
///             for (j, v) in row.iter().enumerate() {
///                 if *v > limit {
///                     return Some((i, j));
///                 }
///                 if *v == 0 {
///                     continue 'rows;
///                 }
///             }
///         }
///         None
///     }
/// }
/// ```
///
/// The check is a statement at the start of each block, so labels,
/// `break value`, `continue` and borrows behave exactly as without the
/// attribute.
///
/// Not instrumented: nested items (`fn`, `impl`, `const`, `static`, `mod`
/// ... inside the body are other functions; annotate them separately),
/// const contexts (`const { .. }` blocks, array lengths, const generic
/// arguments), and code inside macro invocations (`vec![..]`,
/// user macros), whose tokens are opaque to the attribute.
///
/// Rejected with an error: `async fn` (an async body runs in `poll` of a
/// future, not as a plain function; put `gort::preempt::check()` in it by
/// hand), `const fn` (the check is not const), functions without a body,
/// and any arguments to the attribute. Expects the crate to be reachable
/// as `::gort`.
#[proc_macro_attribute]
pub fn preemptible(args: TokenStream, item: TokenStream) -> TokenStream {
    match preemptible_impl(args.into(), item.into()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn preemptible_impl(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(
            args,
            "#[gort::preemptible] takes no arguments",
        ));
    }
    // `fn` items, impl methods (a `self` receiver parses as an `ItemFn`
    // too) and trait methods with a default body all parse as `ItemFn`.
    let mut f: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            if let Ok(t) = syn::parse2::<syn::TraitItemFn>(item) {
                if t.default.is_none() {
                    return Err(syn::Error::new_spanned(
                        &t.sig,
                        "#[gort::preemptible] needs a function with a body \
                         (put it on the implementations instead)",
                    ));
                }
            }
            return Err(syn::Error::new(
                e.span(),
                format!("#[gort::preemptible] applies to functions and methods: {e}"),
            ));
        }
    };
    if let Some(a) = &f.sig.asyncness {
        return Err(syn::Error::new_spanned(
            a,
            "#[gort::preemptible] cannot be used on an `async fn`: its body runs inside \
             `Future::poll`, not as a plain function; call `gort::preempt::check()` by hand \
             where it fits",
        ));
    }
    if let Some(c) = &f.sig.constness {
        return Err(syn::Error::new_spanned(
            c,
            "#[gort::preemptible] cannot be used on a `const fn`: the preemption check \
             (`gort::preempt::check()`) is not const",
        ));
    }
    Injector.visit_block_mut(&mut f.block);
    f.block.stmts.insert(0, check_stmt());
    Ok(quote!(#f))
}

/// `::gort::preempt::check();`, spanned at the attribute (call site), with
/// an absolute path so a local `gort` or `preempt` cannot capture it.
fn check_stmt() -> syn::Stmt {
    syn::parse_quote!(::gort::preempt::check();)
}

/// Puts the check at the start of every loop body reachable from a
/// function body without entering another item or a const context.
struct Injector;

impl VisitMut for Injector {
    fn visit_expr_mut(&mut self, e: &mut syn::Expr) {
        match e {
            syn::Expr::Loop(l) => l.body.stmts.insert(0, check_stmt()),
            syn::Expr::While(w) => w.body.stmts.insert(0, check_stmt()),
            syn::Expr::ForLoop(f) => f.body.stmts.insert(0, check_stmt()),
            // Inline `const { .. }`: evaluated at compile time.
            syn::Expr::Const(_) => return,
            // `[x; N]`: N is a const context; only x runs.
            syn::Expr::Repeat(r) => {
                self.visit_expr_mut(&mut r.expr);
                return;
            }
            _ => {}
        }
        // Also visits the condition / iterator expression and the body
        // (whose first statement is now the check: visiting it is a no-op).
        visit_mut::visit_expr_mut(self, e);
    }

    // Nested items are separate functions (or const contexts).
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}

    // Types can hold const expressions (`[u8; { .. }]`).
    fn visit_type_mut(&mut self, _: &mut syn::Type) {}

    // Generic arguments are types and const contexts (`f::<{ .. }>()`).
    fn visit_generic_argument_mut(&mut self, _: &mut syn::GenericArgument) {}
}
