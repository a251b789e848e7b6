//! A raw HTTP/2 gRPC client for the transport tests: it sends a request
//! body a piece at a time and leaves answers unread, which a tonic client
//! never does.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::net::SocketAddr;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::net::TcpStream;

/// Opens an HTTP/2 connection to `addr`, driven by a task of its own.
///
/// # Errors
/// When the connection or the HTTP/2 handshake fails.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Bytes>> {
    let tcp = TcpStream::connect(addr).await?;
    let (send, connection) = h2::client::handshake(tcp).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(send.ready().await?)
}

/// The head of a gRPC call to `path`, with a bearer `token` if given.
pub fn request(addr: SocketAddr, path: &str, token: Option<&str>) -> http::Request<()> {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(()).expect("a valid request head")
}

/// The gRPC prefix of an uncompressed message of `len` bytes.
pub fn prefix(len: usize) -> Bytes {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(len).expect("fits").to_be_bytes());
    Bytes::from(out)
}

/// `message` with its gRPC prefix.
pub fn framed(message: &[u8]) -> Bytes {
    [&prefix(message.len())[..], message].concat().into()
}

/// Sends a whole unary call and returns its gRPC status code and message.
///
/// # Errors
/// When the connection fails.
pub async fn call(
    send: &mut SendRequest<Bytes>,
    head: http::Request<()>,
    message: &[u8],
) -> anyhow::Result<(u32, String)> {
    let ready = send.clone().ready().await?;
    *send = ready;
    let (response, mut body) = send.send_request(head, false)?;
    body.send_data(framed(message), true)?;
    status(response.await?).await
}

/// The gRPC status of an answer whose head refused the call (a
/// trailers-only answer), if it did.
pub fn refusal<B>(response: &http::Response<B>) -> Option<(u32, String)> {
    grpc_status(response.headers())
}

/// Reads an answer to its end and returns its gRPC status.
///
/// # Errors
/// When the stream fails or ends without a status.
pub async fn status(response: http::Response<h2::RecvStream>) -> anyhow::Result<(u32, String)> {
    if let Some(status) = refusal(&response) {
        return Ok(status);
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data?;
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    grpc_status(&trailers).ok_or_else(|| anyhow::anyhow!("no grpc-status in the answer"))
}

fn grpc_status(headers: &http::HeaderMap) -> Option<(u32, String)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some((code, message))
}

/// Undoes gRPC's percent-encoding of status messages.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
