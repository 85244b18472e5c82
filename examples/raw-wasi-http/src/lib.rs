//! A handler written against plain `wasi:http`, without the Outpost SDK, to
//! show that any standard `wasi:http/proxy` component runs on Outpost
//! unchanged. It answers with the request path and a custom header.

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Component;

wasip2::http::proxy::export!(Component);

impl wasip2::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let headers = Fields::from_list(&[
            ("content-type".to_owned(), b"text/plain".to_vec()),
            ("x-raw-wasi".to_owned(), b"yes".to_vec()),
        ])
        .expect("static headers are valid");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(response_out, Ok(response));

        let stream = body.write().expect("stream is taken once");
        let message = format!("raw wasi:http handler saw {path}\n");
        stream
            .blocking_write_and_flush(message.as_bytes())
            .expect("client is reading");
        drop(stream);
        OutgoingBody::finish(body, None).expect("body finishes once");
    }
}
