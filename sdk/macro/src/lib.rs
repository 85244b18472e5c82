//! The `#[handler]` attribute of `outpost-sdk`. Use it through
//! `outpost_sdk::handler`; see that crate for documentation.
//!
//! It parses tokens by hand instead of pulling in `syn`: all it needs is the
//! name of the function it is attached to, and every handler build pays for
//! this crate's compile time.

use proc_macro::{TokenStream, TokenTree};

/// Marks `fn NAME(req: Request) -> Result<Response>` as the component's
/// `wasi:http/incoming-handler` export.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error("#[outpost_sdk::handler] takes no arguments");
    }
    let Some(name) = function_name(item.clone()) else {
        return compile_error(
            "#[outpost_sdk::handler] goes on a function: `fn handle(req: Request) -> Result<Response>`",
        );
    };
    // The export exists only in the component. Built for the host (the
    // project's `cargo test`), the handler is a plain function; the
    // constant keeps it used and checks its signature there too.
    let export = format!(
        "#[cfg(target_arch = \"wasm32\")]
        #[doc(hidden)]
        struct __OutpostHandler;
        #[cfg(target_arch = \"wasm32\")]
        impl ::outpost_sdk::__private::Guest for __OutpostHandler {{
            fn handle(
                request: ::outpost_sdk::__private::IncomingRequest,
                response_out: ::outpost_sdk::__private::ResponseOutparam,
            ) {{
                ::outpost_sdk::__private::run(request, response_out, {name})
            }}
        }}
        #[cfg(target_arch = \"wasm32\")]
        ::outpost_sdk::__private::bindings::__export_handler!(__OutpostHandler);
        #[cfg(not(target_arch = \"wasm32\"))]
        const _: fn(::outpost_sdk::Request) -> ::outpost_sdk::Result<::outpost_sdk::Response> = {name};"
    );
    let mut out = item;
    out.extend(
        export
            .parse::<TokenStream>()
            .expect("generated code is valid Rust"),
    );
    out
}

/// The identifier after the `fn` keyword, skipping attributes, visibility and
/// qualifiers such as `pub(crate)`.
fn function_name(item: TokenStream) -> Option<String> {
    let mut tokens = item.into_iter();
    while let Some(token) = tokens.next() {
        if let TokenTree::Ident(ident) = &token
            && ident.to_string() == "fn"
        {
            return match tokens.next() {
                Some(TokenTree::Ident(name)) => Some(name.to_string()),
                _ => None,
            };
        }
    }
    None
}

fn compile_error(message: &str) -> TokenStream {
    format!("::core::compile_error!({message:?});")
        .parse()
        .expect("compile_error! invocation is valid Rust")
}
