//! Answers every request with `200 hello`: nothing but the wasi:http handler a host must call,
//! so serving it measures the host itself.

#[cfg(target_arch = "wasm32")]
mod component {
    use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

    struct Hello;

    impl wasip2::exports::http::incoming_handler::Guest for Hello {
        fn handle(_request: IncomingRequest, out: ResponseOutparam) {
            let headers = Fields::from_list(&[("content-type".to_owned(), b"text/plain".to_vec())]).expect("a valid header");
            let response = OutgoingResponse::new(headers);
            let body = response.body().expect("the body, taken once");
            ResponseOutparam::set(out, Ok(response));
            let stream = body.write().expect("the body's stream, taken once");
            // A failed write means the client went away; there is no one left to tell.
            let _ = stream.blocking_write_and_flush(b"hello\n");
            drop(stream);
            let _ = OutgoingBody::finish(body, None);
        }
    }

    wasip2::http::proxy::export!(Hello with_types_in wasip2);
}
