//! The test proxy against a loopback echo server: bytes pass, a blackhole
//! holds them on old and new connections, a reset drops both, and a delay
//! holds each chunk for at least its duration.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_testenv::proxy::{Mode, Proxy};

/// Each chunk the echo server read, with when.
type Received = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// An echo server that records when each chunk arrived and when it accepted each connection.
struct Echo {
    addr: SocketAddr,
    received: Received,
    accepted: Arc<Mutex<Vec<Instant>>>,
}

impl Echo {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Received = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let (log, count) = (received.clone(), accepted.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                count.lock().unwrap().push(Instant::now());
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        log.lock().unwrap().push((Instant::now(), buf[..n].to_vec()));
                        if stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { addr, received, accepted }
    }

    /// When the echo server first saw `bytes`.
    fn arrival_of(&self, bytes: &[u8]) -> Option<Instant> {
        self.received.lock().unwrap().iter().find(|(_, b)| b.as_slice() == bytes).map(|(at, _)| *at)
    }

    /// When the echo server accepted each connection, in order.
    fn accepted(&self) -> Vec<Instant> {
        self.accepted.lock().unwrap().clone()
    }
}

fn connect(proxy: &Proxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Sends `msg` and reads the echo (failure bound: the read timeout).
fn round_trip(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

/// Nothing comes back on `stream` within `window`.
fn silent_for(stream: &mut TcpStream, window: Duration) {
    stream.set_read_timeout(Some(window)).unwrap();
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected silence, got {other:?}"),
    }
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
}

#[test]
fn pass_forwards_both_ways() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    assert_eq!(proxy.mode(), Mode::Pass);
    let mut stream = connect(&proxy);
    round_trip(&mut stream, b"hello");
    round_trip(&mut stream, b"again");
    let mut second = connect(&proxy);
    round_trip(&mut second, b"second");
    assert_eq!(echo.accepted().len(), 2);
}

#[test]
fn blackhole_holds_existing_and_new_connections_until_it_heals() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    let mut old = connect(&proxy);
    round_trip(&mut old, b"before");

    proxy.set_mode(Mode::Blackhole);
    old.write_all(b"held-old").unwrap();
    // A new connection is accepted (the client sees no error) but goes nowhere.
    let mut new = connect(&proxy);
    new.write_all(b"held-new").unwrap();
    silent_for(&mut old, Duration::from_millis(500));
    silent_for(&mut new, Duration::from_millis(100));

    let healed = Instant::now();
    proxy.set_mode(Mode::Pass);
    let mut got = [0u8; 8];
    old.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"held-old");
    new.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"held-new");
    // Whatever the echo server saw, it saw after the heal.
    for msg in [b"held-old", b"held-new"] {
        assert!(echo.arrival_of(msg).unwrap() >= healed, "{:?} passed during the blackhole", msg);
    }
    let accepted = echo.accepted();
    assert_eq!(accepted.len(), 2);
    assert!(accepted[1] >= healed, "a blackholed connection reached the upstream");
}

#[test]
fn reset_drops_existing_connections_and_refuses_new_ones() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    let mut old = connect(&proxy);
    round_trip(&mut old, b"before");

    proxy.set_mode(Mode::Reset);
    let mut buf = [0u8; 16];
    let err = old.read(&mut buf).expect_err("an existing connection is reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");

    // The RST may arrive before the write: then the write reports it, and the
    // socket has nothing more to say (a later read gives 0). Either way it
    // must be a reset, never a FIN.
    let mut new = connect(&proxy);
    let err = match new.write_all(b"refused") {
        Err(err) => err,
        Ok(()) => new.read(&mut buf).expect_err("a new connection is reset"),
    };
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    assert!(echo.arrival_of(b"refused").is_none());

    proxy.set_mode(Mode::Pass);
    let mut after = connect(&proxy);
    round_trip(&mut after, b"after");
}

#[test]
fn delay_holds_each_chunk_for_its_duration() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    let delay = Duration::from_millis(300);
    proxy.set_mode(Mode::Delay(delay));
    let mut stream = connect(&proxy);
    let sent = Instant::now();
    round_trip(&mut stream, b"slow");
    let back = Instant::now();
    // Lower bounds only: the proxy cannot deliver before a chunk is due.
    assert!(echo.arrival_of(b"slow").unwrap() >= sent + delay);
    assert!(back >= sent + 2 * delay);

    proxy.set_mode(Mode::Pass);
    round_trip(&mut stream, b"fast");
}

#[test]
fn a_dropped_proxy_closes_its_port() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    let addr = proxy.addr();
    let mut stream = connect(&proxy);
    round_trip(&mut stream, b"x");
    drop(proxy);
    assert!(TcpStream::connect(addr).is_err(), "the port still accepts");
    let mut buf = [0u8; 1];
    assert!(matches!(stream.read(&mut buf), Ok(0) | Err(_)), "the connection outlived the proxy");
}
