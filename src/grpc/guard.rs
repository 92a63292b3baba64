//! The middleware every service of the server sits behind: it authorizes the call
//! ([`AccessPolicy`]), hands the caller to the handler through the request extensions, logs
//! one line per request at debug, and reports an oversized request as RESOURCE_EXHAUSTED.
//!
//! It wraps each service rather than the whole router so it keeps the service's
//! `NamedService` name, and it is written against tonic's own re-exports of `http` and
//! `tower_service` so the crate needs no extra dependencies for it.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;

use super::auth::{required_access, AccessPolicy};

/// A service behind the access check and request log.
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    inner: S,
    policy: Arc<AccessPolicy>,
    max_request_bytes: usize,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, policy: Arc<AccessPolicy>, max_request_bytes: usize) -> Self {
        Self {
            inner,
            policy,
            max_request_bytes,
        }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Guarded<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let method = request.uri().path().to_string();
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        match self
            .policy
            .authorize(authorization, required_access(&method))
        {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
            }
            Err(status) => {
                // The secret is never logged, only the refusal.
                tracing::debug!(%method, code = ?status.code(), "request refused");
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        }
        // The ready service answers this call; a clone takes its place for the next one
        // (the usual tower pattern, since `poll_ready` was called on `self.inner`).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.max_request_bytes;
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            report_oversized_as_resource_exhausted(&mut response, limit);
            report_undecodable_as_invalid_argument(&mut response);
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("0 (or in trailers)")
                .to_string();
            tracing::debug!(
                %method,
                grpc_status = %code,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "request"
            );
            Ok(response)
        })
    }
}

/// Prefix of the message tonic-prost gives a request it cannot decode (invalid UTF-8 in a
/// string field, a truncated or garbled message).
const DECODE_FAILURE: &str = "failed to decode Protobuf message";

/// tonic-prost answers a request it cannot decode with INTERNAL before the handler runs. The
/// fault is the client's, and INTERNAL would send operators looking for a bug, so it becomes
/// INVALID_ARGUMENT. Our own INTERNAL statuses never carry that message (see
/// [`super::error`]), so nothing else is rewritten.
fn report_undecodable_as_invalid_argument(response: &mut http::Response<tonic::body::Body>) {
    let internal = (tonic::Code::Internal as i32).to_string();
    let headers = response.headers_mut();
    if headers.get("grpc-status").and_then(|v| v.to_str().ok()) != Some(internal.as_str()) {
        return;
    }
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    if !message.starts_with(DECODE_FAILURE) {
        return;
    }
    let code = (tonic::Code::InvalidArgument as i32).to_string();
    let detail = message.trim_start_matches(DECODE_FAILURE);
    let detail = detail.trim_start_matches(':').trim();
    // grpc-message is percent-encoded on the wire; keeping it printable ASCII without `%`
    // needs no encoding.
    let message: String = format!("the request is not a valid message of this method: {detail}")
        .chars()
        .map(|c| match c {
            '%' => '?',
            c if c == ' ' || c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect();
    if let (Ok(code), Ok(message)) = (
        http::HeaderValue::from_str(&code),
        http::HeaderValue::from_str(&message),
    ) {
        headers.insert("grpc-status", code);
        headers.insert("grpc-message", message);
    }
}

/// Decodes gRPC's percent-encoding of `grpc-message` (only `%XX` escapes).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// tonic answers a request over `max_decoding_message_size` with OUT_OF_RANGE before the
/// handler runs; gRPC's convention (and our API contract) is RESOURCE_EXHAUSTED. The one
/// OUT_OF_RANGE of ours (a `min_position` not reached, `error::NOT_REACHED`) carries error
/// details and tonic's carries none, so a trailers-only OUT_OF_RANGE without details here
/// is always that case.
fn report_oversized_as_resource_exhausted(
    response: &mut http::Response<tonic::body::Body>,
    limit: usize,
) {
    let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
    let headers = response.headers_mut();
    if headers.get("grpc-status").and_then(|v| v.to_str().ok()) != Some(out_of_range.as_str())
        || headers.contains_key("grpc-status-details-bin")
    {
        return;
    }
    let code = (tonic::Code::ResourceExhausted as i32).to_string();
    let message = format!("request larger than the server's limit of {limit} bytes");
    if let (Ok(code), Ok(message)) = (
        http::HeaderValue::from_str(&code),
        http::HeaderValue::from_str(&message),
    ) {
        headers.insert("grpc-status", code);
        headers.insert("grpc-message", message);
    }
}
