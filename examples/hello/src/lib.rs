//! The smallest Outpost handler: answers every request with a greeting.

use outpost_sdk::{Request, Response, Result, handler};

#[handler]
fn handle(_req: Request) -> Result<Response> {
    Ok(Response::text("Hello from Outpost!\n"))
}
