//! Geo-blocking: a country allow or deny list, from the app's variables
//! (change them with secrets of the same names, no redeploy), decided by
//! where the node's MaxMind databases place the client.
//!
//! - `allow_countries = "FR,DE"`: only those countries pass (when set);
//! - `deny_countries = "KP"`: those countries get 403;
//! - `unknown = "allow"` or `"deny"`: clients no database places.

use outpost_sdk::{Request, Response, Result, StatusCode, client, handler, var};

#[handler]
fn handle(req: Request) -> Result<Response> {
    let country = client::geo().and_then(|geo| geo.country);
    if !allowed(country.as_deref()) {
        let shown = country.as_deref().unwrap_or("an unknown place");
        return Ok(Response::text(format!("not available from {shown}\n"))
            .with_status(StatusCode::FORBIDDEN)
            .with_header("cache-control", "private, no-store"));
    }
    Ok(Response::text(format!(
        "welcome{}: {}\n",
        country
            .map(|country| format!(" from {country}"))
            .unwrap_or_default(),
        req.path()
    )))
}

/// Whether a client from `country` (`None`: not placed) may pass.
fn allowed(country: Option<&str>) -> bool {
    let Some(country) = country else {
        return var("unknown").as_deref() != Some("deny");
    };
    let listed = |name: &str| {
        var(name)
            .unwrap_or_default()
            .split(',')
            .any(|item| item.trim().eq_ignore_ascii_case(country))
    };
    let allow_list = var("allow_countries").unwrap_or_default();
    if !allow_list.trim().is_empty() {
        return listed("allow_countries");
    }
    !listed("deny_countries")
}
