//! A loopback TCP proxy for tests, whose behaviour can be switched while it
//! runs. It sits between a member operator and the Berth apiserver to cut
//! the member off in the ways a network can:
//!
//! - [`Mode::Pass`]: bytes flow both ways.
//! - [`Mode::Blackhole`]: no bytes pass, on new connections (accepted, then
//!   held without dialling the upstream) and on existing ones alike. Nothing
//!   is closed: a client sees a hang. Bytes are held, not dropped, and flow
//!   again after a switch back, as TCP retransmits after a partition heals.
//! - [`Mode::Reset`]: every connection is dropped with a TCP RST, existing ones
//!   at once and new ones as soon as they are accepted (the client sees
//!   "connection reset", as from a refused port).
//! - [`Mode::Delay`]: each chunk of bytes is delivered the given time after it
//!   arrived, in order, in both directions.
//!
//! The proxy runs on a thread of its own with its own tokio runtime, so a
//! test may drive it from any runtime or from none. Dropping it stops it and
//! closes every connection.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::Error;

/// What the proxy does with connections (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Blackhole,
    Reset,
    Delay(Duration),
}

impl Mode {
    fn delay(self) -> Duration {
        match self {
            Mode::Delay(d) => d,
            _ => Duration::ZERO,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Pass => f.write_str("pass"),
            Mode::Blackhole => f.write_str("blackhole"),
            Mode::Reset => f.write_str("reset"),
            Mode::Delay(d) => write!(f, "delay {}ms", d.as_millis()),
        }
    }
}

/// `pass`, `blackhole`, `reset`, `delay 1500ms` or `delay 6s`.
impl FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || Error::ProxyMode(s.to_owned());
        match s.trim() {
            "pass" => Ok(Mode::Pass),
            "blackhole" => Ok(Mode::Blackhole),
            "reset" => Ok(Mode::Reset),
            other => {
                let amount = other.strip_prefix("delay").ok_or_else(bad)?.trim();
                let (number, scale) = if let Some(ms) = amount.strip_suffix("ms") {
                    (ms, 1)
                } else if let Some(s) = amount.strip_suffix('s') {
                    (s, 1000)
                } else {
                    return Err(bad());
                };
                let number: u64 = number.trim().parse().map_err(|_| bad())?;
                Ok(Mode::Delay(Duration::from_millis(number * scale)))
            }
        }
    }
}

/// A running proxy from [`Proxy::addr`] to its upstream.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`, in [`Mode::Pass`].
    pub fn start(upstream: SocketAddr) -> Result<Self, Error> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream)
    }

    /// Listens on `listen` (port 0: a free one) and forwards to `upstream`.
    pub fn start_on(listen: SocketAddr, upstream: SocketAddr) -> Result<Self, Error> {
        let listener = std::net::TcpListener::bind(listen).map_err(|source| Error::ProxyListen { listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::ProxyListen { listen, source })?;
        listener.set_nonblocking(true).map_err(|source| Error::ProxyListen { listen, source })?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Runtime)?;
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let (stop, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("a non-blocking listener registers");
                    tokio::select! {
                        () = accept_loop(listener, upstream, mode_rx) => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime drops every connection task and its sockets.
            })
            .map_err(Error::Runtime)?;
        Ok(Self { addr, upstream, mode, stop: Some(stop), thread: Some(thread) })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Switches the mode; it applies to existing connections at once.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, mode: watch::Receiver<Mode>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or the like: try again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = client.set_nodelay(true);
        if *mode.borrow() == Mode::Reset {
            reset(&client);
            continue;
        }
        tokio::spawn(serve(client, upstream, mode.clone()));
    }
}

/// Makes the coming close of `stream` send RST instead of FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn serve(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    // A connection accepted during a blackhole is held before the upstream is dialled.
    let released = mode.wait_for(|m| *m != Mode::Blackhole).await.map(|m| *m);
    if !matches!(released, Ok(Mode::Pass | Mode::Delay(_))) {
        reset(&client);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let finished = {
        let (upward, downward) = (mode.clone(), mode.clone());
        let both_ways = async {
            tokio::try_join!(
                pump(&mut client_read, &mut server_write, upward),
                pump(&mut server_read, &mut client_write, downward)
            )
        };
        tokio::select! {
            _ = both_ways => true,
            _ = mode.wait_for(|m| *m == Mode::Reset) => false,
        }
    };
    if !finished {
        // Whole streams again: dropping a write half alone would send FIN first.
        for stream in [client_read.reunite(client_write), server_read.reunite(server_write)].into_iter().flatten() {
            reset(&stream);
        }
    }
}

/// Copies `from` to `to` until `from` ends, honouring delays and blackholes.
/// Reading and writing are separate, so a delay does not add up over chunks.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) -> std::io::Result<()> {
    let (chunks, mut pending) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read_mode = mode.clone();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let due = Instant::now() + read_mode.borrow().delay();
            if chunks.send((due, buf[..n].to_vec())).is_err() {
                return Ok(());
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = pending.recv().await {
            tokio::time::sleep_until(due).await;
            if mode.wait_for(|m| *m != Mode::Blackhole).await.is_err() {
                return Ok(());
            }
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for (text, mode) in [
            ("pass", Mode::Pass),
            ("blackhole", Mode::Blackhole),
            ("reset\n", Mode::Reset),
            ("delay 1500ms", Mode::Delay(Duration::from_millis(1500))),
            ("delay 6s", Mode::Delay(Duration::from_secs(6))),
        ] {
            assert_eq!(text.parse::<Mode>().unwrap(), mode, "{text:?}");
            assert_eq!(mode.to_string().parse::<Mode>().unwrap(), mode);
        }
        for bad in ["", "drop", "delay", "delay 5", "delay xs", "delay -1s"] {
            assert!(bad.parse::<Mode>().is_err(), "{bad:?} parses");
        }
    }
}
