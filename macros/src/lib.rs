//! Procedural macros re-exported by `gort`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, ItemFn, ReturnType};

/// Runs `fn main` as the main goroutine: the body becomes the closure given
/// to `gort::run`, so the program ends when it returns.
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
    if !args.is_empty() {
        let msg = "#[gort::main] takes no arguments; configure the runtime with GORT_MAXPROCS \
                   or gort::Builder";
        return syn::Error::new(proc_macro2::Span::call_site(), msg)
            .to_compile_error()
            .into();
    }
    let f = parse_macro_input!(item as ItemFn);
    if f.sig.asyncness.is_some() || !f.sig.inputs.is_empty() || !f.sig.generics.params.is_empty() {
        return syn::Error::new_spanned(
            &f.sig,
            "#[gort::main] expects a plain `fn main()` (not async, no arguments, no generics)",
        )
        .to_compile_error()
        .into();
    }
    let attrs = &f.attrs;
    let vis = &f.vis;
    let sig = &f.sig;
    let body = &f.block;
    let ret = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, t) => quote!(#t),
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            ::gort::run(move || -> #ret #body)
        }
    }
    .into()
}
