//! Raw TCP clients that behave as attackers do: connect from a chosen
//! loopback address, send part of a request (or nothing), and see when the
//! server gives up on them; plus the few HTTP/2 frames needed to speak h2c
//! without answering pings.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A TCP connection to `to` from `from` (any address of 127.0.0.0/8 works
/// on Linux loopback, so tests can play many clients).
pub fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// A TCP connection to `to` from `from` whose receive buffer is tiny: a
/// client that reads slowly, or not at all, fills it at once.
pub fn connect_small_window(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_recv_buffer_size(4096)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// `127.0.0.N`.
pub fn loopback(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// Reads (and discards) until the server closes the connection or
/// `timeout` passes; returns what was read and whether it closed.
pub fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 << 10];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match stream.read(&mut buf) {
            Ok(0) => return (seen, true),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            // Reset by the server: closed as well.
            Err(_) => return (seen, true),
        }
    }
    (seen, false)
}

/// Whether the server has closed `stream` (without waiting).
pub fn is_closed(stream: &mut TcpStream) -> bool {
    read_until_closed(stream, Duration::from_millis(1)).1
}

/// Writes `bytes`; an error (the server closed) is returned, not a panic.
pub fn send(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes)
}

/// HTTP/2 (h2c, prior knowledge) frames, written by hand so a test can be
/// a peer that never answers pings.
pub mod h2 {
    /// The client connection preface.
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    /// Frame types.
    pub const HEADERS: u8 = 0x1;
    /// See [`HEADERS`].
    pub const SETTINGS: u8 = 0x4;
    /// See [`HEADERS`].
    pub const PING: u8 = 0x6;
    /// See [`HEADERS`].
    pub const GOAWAY: u8 = 0x7;

    /// One frame: 9-byte header and payload.
    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The preface and an empty SETTINGS frame: what a client sends first.
    pub fn client_start() -> Vec<u8> {
        client_start_with_window(None)
    }

    /// The preface and SETTINGS, with SETTINGS_INITIAL_WINDOW_SIZE if given
    /// (0: the server may send no response body until the client opens it).
    pub fn client_start_with_window(window: Option<u32>) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        let mut settings = Vec::new();
        if let Some(window) = window {
            settings.extend_from_slice(&0x4u16.to_be_bytes());
            settings.extend_from_slice(&window.to_be_bytes());
        }
        out.extend(frame(SETTINGS, 0, 0, &settings));
        out
    }

    /// A HEADERS frame (END_HEADERS, and END_STREAM if `end_stream`) with
    /// the fields as HPACK literals without indexing (no Huffman).
    pub fn headers(stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let mut block = Vec::new();
        for (name, value) in fields {
            block.push(0x00);
            push_string(&mut block, name.as_bytes());
            push_string(&mut block, value.as_bytes());
        }
        let flags = 0x4 | if end_stream { 0x1 } else { 0 };
        frame(HEADERS, flags, stream, &block)
    }

    /// A HEADERS frame for `GET path` on `authority`, ending the stream.
    pub fn get(stream: u32, path: &str, authority: &str) -> Vec<u8> {
        headers(
            stream,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", path),
                (":authority", authority),
            ],
            true,
        )
    }

    fn push_string(out: &mut Vec<u8>, bytes: &[u8]) {
        assert!(bytes.len() < 127, "short strings only");
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }

    /// Splits what a server sent into frames: (type, flags, stream, payload).
    pub fn parse(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut frames = Vec::new();
        while bytes.len() >= 9 {
            let len = (usize::from(bytes[0]) << 16)
                | (usize::from(bytes[1]) << 8)
                | usize::from(bytes[2]);
            if bytes.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
            frames.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        frames
    }
}
