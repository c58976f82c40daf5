//! What a slow or greedy client may hold of the TLS listener: a bounded TLS
//! handshake, a bounded wait for a request's headers, and a cap on open
//! connections. Without them, clients that send one header line a second
//! keep their connections (and file descriptors) for as long as they like.

use std::future::Ready;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of the TLS listener (`--tls-handshake-timeout`,
/// `--header-read-timeout`, `--max-connections`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest a client may take to finish the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Longest a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Most connections open at once; further ones are closed on accept.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    /// 10 s to finish the handshake, 10 s to send the headers, 10 000 connections.
    fn default() -> Self {
        Self {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// Accepts a TCP connection while fewer than the cap are open (and sets
/// `TCP_NODELAY` on it); past the cap, the connection is closed at once.
#[derive(Clone, Debug)]
pub struct CappedAcceptor {
    slots: Arc<Semaphore>,
}

impl CappedAcceptor {
    pub fn new(max_connections: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(max_connections)) }
    }
}

impl<S> Accept<TcpStream, S> for CappedAcceptor {
    type Stream = Counted;
    type Service = S;
    type Future = Ready<io::Result<(Counted, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let accepted = match self.slots.clone().try_acquire_owned() {
            // TCP_NODELAY under TLS: an answer goes out in more than one small
            // segment (a 204's headers and the TLS record), and with Nagle the
            // second one waited for the client's delayed ACK, about 40 ms.
            Ok(slot) => stream.set_nodelay(true).map(|()| (Counted { stream, _slot: slot }, service)),
            Err(_) => {
                tracing::warn!("connection limit reached: closing a new connection");
                Err(io::Error::other("connection limit reached"))
            }
        };
        std::future::ready(accepted)
    }
}

/// A connection that holds one slot of the cap until it is dropped.
#[derive(Debug)]
pub struct Counted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
