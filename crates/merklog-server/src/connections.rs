//! The cap on open connections: each accepted socket takes a slot, held
//! until the connection's socket is dropped (after its TLS handshake
//! fails, its peer leaves, or the transport closes it); a socket accepted
//! while every slot is taken is closed at once.
//!
//! A slot costs the server a socket and hyper's state for one HTTP/2
//! connection, whether or not the connection is used: the cap bounds what
//! a flood of idle connections can hold. Slots come back as connections
//! close, at the latest at the maximum connection age.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection holding its slot.
#[derive(Debug)]
pub struct Slotted {
    io: TcpStream,
    _slot: Slot,
}

/// One taken slot; given back (and the gauge updated) when dropped.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    slots: Arc<Semaphore>,
    max: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The permit is still held here: one more slot is about to be free.
        let open = self.max - self.slots.available_permits() - 1;
        crate::metrics::connections(open);
    }
}

/// Gives each socket of `incoming` a slot of `max`, closing those that find
/// none.
pub fn capped<I>(incoming: I, max: usize) -> impl Stream<Item = io::Result<Slotted>>
where
    I: Stream<Item = io::Result<TcpStream>>,
{
    let slots = Arc::new(Semaphore::new(max));
    incoming.filter_map(move |socket| {
        let io = match socket {
            Ok(io) => io,
            Err(e) => return Some(Err(e)),
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                crate::metrics::connections(max - slots.available_permits());
                Some(Ok(Slotted {
                    io,
                    _slot: Slot {
                        _permit: permit,
                        slots: slots.clone(),
                        max,
                    },
                }))
            }
            Err(_) => {
                crate::metrics::connection_refused();
                tracing::debug!(
                    peer = ?io.peer_addr().ok(),
                    max_connections = max,
                    "connection closed: every connection slot is taken"
                );
                None
            }
        }
    })
}

impl Connected for Slotted {
    // The plain TCP information, so that tonic's `remote_addr` and
    // `peer_certs` (and admission) find it where they look.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Slotted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
