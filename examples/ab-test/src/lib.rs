//! An A/B test at the edge: a visitor's variant is sticky (the `ab`
//! cookie); a new visitor gets B with probability `weight_b` percent, a
//! variable of the app (override it with a secret of the same name to move
//! the split without a redeploy). Each variant's text is a variable too.

use outpost_sdk::{Request, Response, Result, client, handler, var};
use std::hash::{BuildHasher, RandomState};

/// A visitor keeps its variant for 30 days.
const COOKIE_MAX_AGE_S: u32 = 30 * 24 * 3600;

#[handler]
fn handle(req: Request) -> Result<Response> {
    let (variant, assigned) = match cookie(&req, "ab") {
        Some(variant @ ("a" | "b")) => (variant.to_owned(), false),
        _ => (assign(), true),
    };
    let text = var(&format!("text_{variant}")).unwrap_or_else(|| format!("variant {variant}"));
    let mut response = Response::text(format!("{text}\n"))
        .with_header("x-variant", variant.clone())
        // One visitor's page: never stored by a shared cache.
        .with_header("cache-control", "private, no-store");
    if assigned {
        response = response.with_header(
            "set-cookie",
            format!("ab={variant}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax"),
        );
    }
    Ok(response)
}

/// `b` with probability `weight_b` percent (0 to 100), else `a`.
fn assign() -> String {
    let weight = var("weight_b")
        .and_then(|weight| weight.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .min(100);
    // std seeds its hasher from the host's random source: a fresh random
    // number per request.
    let roll = RandomState::new().hash_one(client::request_id()) % 100;
    if roll < weight { "b" } else { "a" }.to_owned()
}

/// The value of cookie `name` in the request's `Cookie` fields.
fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all("cookie")
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}
