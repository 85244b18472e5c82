//! Pages the handler renders itself and keeps in the edge cache through
//! `outpost:edge/cache` (`outpost_sdk::cache`): each page is stored for 60 s
//! (then served stale for 30 s more while it is rendered again) with a tag
//! for its section, and `POST /publish/SECTION` marks a section's pages
//! stale at once. With `[cache] enabled = true` (outpost.toml) the edge
//! answers fresh pages itself, before any instance exists; the handler
//! only runs to render.
//!
//! Run it with `outpost dev` in this directory, then `curl -i
//! localhost:8787/news/1` twice: the second answer says `Cache-Status:
//! Outpost; hit`.

use outpost_sdk::cache::{self, Freshness, Options, Purge};
use outpost_sdk::{HeaderMap, Method, Request, Response, Result, StatusCode, handler};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[handler]
fn handle(req: Request) -> Result<Response> {
    if *req.method() == Method::POST {
        return match req.path().strip_prefix("/publish/") {
            Some(section) => {
                let stale = cache::soft_purge(Purge::Tag(&section_tag(section)))?;
                Ok(Response::text(format!(
                    "{stale} pages of {section} will be rendered again\n"
                )))
            }
            None => Ok(Response::new(StatusCode::METHOD_NOT_ALLOWED)),
        };
    }
    // The key the edge looks pages up by; outpost.toml's [cache.key]
    // leaves the query out of it, so there is one entry per page.
    let url = req.url();
    if let Some(page) = cache::lookup(&url, &HeaderMap::new())? {
        // Stale pages are served while one request renders them again.
        let usable = match page.freshness() {
            Freshness::Fresh => true,
            Freshness::StaleWhileRevalidate => !page.should_refresh(),
            Freshness::StaleIfError | Freshness::Stale => false,
        };
        if usable {
            return Ok(page.into_response());
        }
    }
    let page = render(req.path());
    let section = req
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let options = Options::new()
        .ttl(Duration::from_secs(60))
        .stale_while_revalidate(Duration::from_secs(30))
        .tag(section_tag(section));
    if let Err(err) = cache::insert(&url, &HeaderMap::new(), &page, &options) {
        // The page is still served; the next request renders it again.
        eprintln!("{url} not cached: {err}");
    }
    Ok(page)
}

fn section_tag(section: &str) -> String {
    format!("section:{section}")
}

/// The expensive part, in a real app: templates, queries, fetches.
fn render(path: &str) -> Response {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros());
    Response::text(format!("<h1>{path}</h1>\n<p>rendered at {at}</p>\n"))
        .with_header("content-type", "text/html; charset=utf-8")
}
