//! Request bodies: JSON of at most 16 KiB (64 KiB for the server API), arriving within the
//! request deadline, or a clear error.

use bytes::{Buf, BufMut, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use warp::{Filter, Rejection};

use super::error::ApiError;
use crate::state::App;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: u64 = 16 * 1024;

/// Largest accepted body of a server-API request (its `data` may be 16 KiB of compact JSON, sent
/// pretty-printed).
pub const MAX_SERVER_BODY_BYTES: u64 = 64 * 1024;

/// A JSON body of at most 16 KiB, with or without `Content-Length`, as `T`; every failure is a clear
/// `bad_request` or `payload_too_large`. The content type is not checked: the body is JSON or it is
/// refused, and no route relies on cookies, so a cross-site form gains nothing from a lax type.
pub(crate) fn json_body<T: DeserializeOwned + Send>(
    app: &App,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    json_body_limited(app, MAX_BODY_BYTES)
}

/// `json_body` with another limit.
pub(crate) fn json_body_limited<T: DeserializeOwned + Send>(
    app: &App,
    limit: u64,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    let deadline = app.settings.net.request_timeout;
    let shutdown = app.shutdown.clone();
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length: Option<u64>, body| {
            let shutdown = shutdown.clone();
            async move {
                if length.is_some_and(|l| l > limit) {
                    return Err(Rejection::from(ApiError::PayloadTooLarge(limit / 1024)));
                }
                // The header timeout does not cover the body: a client that announces a body and never
                // sends it would hold its connection slot forever. Nor may it hold up a shutdown: the
                // server answers it 503 at once instead of waiting out the grace period.
                let bytes = tokio::select! {
                    read = tokio::time::timeout(deadline, read_limited(body, limit)) => {
                        read.map_err(|_| Rejection::from(ApiError::RequestTimeout))??
                    }
                    _ = shutdown.cancelled() => return Err(Rejection::from(ApiError::ShuttingDown)),
                };
                parse_body(&bytes).map_err(Rejection::from)
            }
        })
}

/// A request body as `T`; anything else is `bad_request`, with serde's reason.
pub(crate) fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice::<T>(bytes)
        .map_err(|err| ApiError::BadRequest(format!("invalid JSON body: {err}")))
}

/// Reads a body, refusing it as soon as it passes the limit (a chunked body has no length to check).
pub(crate) async fn read_limited<S, B>(body: S, limit: u64) -> Result<BytesMut, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|err| ApiError::BadRequest(format!("could not read body: {err}")))?;
        if (bytes.len() + chunk.remaining()) as u64 > limit {
            return Err(ApiError::PayloadTooLarge(limit / 1024));
        }
        bytes.put(chunk);
    }
    Ok(bytes)
}
