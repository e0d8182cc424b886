//! A minimal HTTP/1.1 keep-alive client connection for load generation: it writes
//! pre-serialized requests and reads whole responses (Content-Length, chunked, or
//! until-close bodies) into one reused buffer, counting body bytes without keeping them.
//! Response heads are parsed with `httparse`, the parser hyper itself uses.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const INITIAL_BUFFER: usize = 16 * 1024;
/// A response head (or a chunk-size or trailer line) larger than this is refused.
const MAX_BUFFER: usize = 1024 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body_bytes: u64,
    /// False when the server asked to close (or the body ran until close).
    pub keep_alive: bool,
}

#[derive(Debug)]
pub enum ClientError {
    /// The server closed (or reset) the connection before sending any byte of the response:
    /// on a reused keep-alive connection the request may be retried on a new one.
    Closed,
    Io(io::Error),
    Protocol(&'static str),
}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> Self {
        ClientError::Io(error)
    }
}

enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Unconsumed input is `buf[start..end]`.
    start: usize,
    end: usize,
}

impl Connection {
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
        })
    }

    /// Sends one request and reads its whole response.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Response, ClientError> {
        if let Err(error) = self.stream.write_all(request).await {
            return Err(if is_reset(&error) {
                ClientError::Closed
            } else {
                ClientError::Io(error)
            });
        }
        self.read_response().await
    }

    async fn read_response(&mut self) -> Result<Response, ClientError> {
        let mut received_any = self.end > self.start;
        loop {
            let (status, framing, keep_alive) = loop {
                if self.end > self.start {
                    received_any = true;
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut response = httparse::Response::new(&mut headers);
                    match response.parse(&self.buf[self.start..self.end]) {
                        Ok(httparse::Status::Complete(head_len)) => {
                            let head = interpret(&response)?;
                            self.start += head_len;
                            break head;
                        }
                        Ok(httparse::Status::Partial) => {}
                        Err(_) => return Err(ClientError::Protocol("invalid response head")),
                    }
                }
                match self.fill().await {
                    Ok(0) if !received_any => return Err(ClientError::Closed),
                    Ok(0) => {
                        return Err(ClientError::Protocol(
                            "connection closed in the response head",
                        ));
                    }
                    Ok(_) => {}
                    Err(ClientError::Io(e)) if !received_any && is_reset(&e) => {
                        return Err(ClientError::Closed);
                    }
                    Err(e) => return Err(e),
                }
            };
            if (100..200).contains(&status) {
                if status == 101 {
                    return Err(ClientError::Protocol("unexpected protocol switch"));
                }
                continue; // interim response (e.g. 100 Continue): the real one follows
            }
            let (body_bytes, keep_alive) = match framing {
                Framing::Empty => (0, keep_alive),
                Framing::Length(length) => {
                    self.skip(length).await?;
                    (length, keep_alive)
                }
                Framing::Chunked => (self.read_chunked().await?, keep_alive),
                Framing::UntilClose => (self.read_until_close().await?, false),
            };
            return Ok(Response {
                status,
                body_bytes,
                keep_alive,
            });
        }
    }

    /// Reads more input after `end`, compacting or growing the buffer when it is full.
    /// Returns the number of bytes read; 0 means the peer closed the connection.
    async fn fill(&mut self) -> Result<usize, ClientError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_BUFFER {
                self.buf.resize(self.buf.len() * 2, 0);
            } else {
                return Err(ClientError::Protocol(
                    "response head or chunk line too large",
                ));
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Consumes exactly `count` bytes, buffered first.
    async fn skip(&mut self, mut count: u64) -> Result<(), ClientError> {
        loop {
            let available = (self.end - self.start) as u64;
            let take = available.min(count);
            self.start += take as usize;
            count -= take;
            if count == 0 {
                return Ok(());
            }
            if self.fill().await? == 0 {
                return Err(ClientError::Protocol(
                    "connection closed in the response body",
                ));
            }
        }
    }

    async fn read_chunked(&mut self) -> Result<u64, ClientError> {
        let mut total = 0u64;
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.start += used;
                        break size;
                    }
                    Ok(httparse::Status::Partial) => self.fill_or_eof().await?,
                    Err(_) => return Err(ClientError::Protocol("invalid chunk size")),
                }
            };
            if size == 0 {
                break;
            }
            self.skip(size).await?;
            total += size;
            while self.end - self.start < 2 {
                self.fill_or_eof().await?;
            }
            if &self.buf[self.start..self.start + 2] != b"\r\n" {
                return Err(ClientError::Protocol("chunk not followed by CRLF"));
            }
            self.start += 2;
        }
        // Trailer section: header lines up to an empty line.
        loop {
            match self.buf[self.start..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                Some(0) => {
                    self.start += 2;
                    return Ok(total);
                }
                Some(line) => self.start += line + 2,
                None => self.fill_or_eof().await?,
            }
        }
    }

    async fn read_until_close(&mut self) -> Result<u64, ClientError> {
        let mut total = (self.end - self.start) as u64;
        self.start = self.end;
        loop {
            let n = self.fill().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
            self.start = self.end;
        }
    }

    async fn fill_or_eof(&mut self) -> Result<(), ClientError> {
        match self.fill().await? {
            0 => Err(ClientError::Protocol(
                "connection closed in the response body",
            )),
            _ => Ok(()),
        }
    }
}

fn interpret(response: &httparse::Response<'_, '_>) -> Result<(u16, Framing, bool), ClientError> {
    let status = response
        .code
        .ok_or(ClientError::Protocol("no status code"))?;
    let http11 = response.version == Some(1);
    let (mut close, mut keep_alive_token) = (false, false);
    let (mut length, mut chunked) = (None, false);
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value)
                .map_err(|_| ClientError::Protocol("bad content-length"))?;
            let value: u64 = text
                .trim()
                .parse()
                .map_err(|_| ClientError::Protocol("bad content-length"))?;
            if length.is_some_and(|previous| previous != value) {
                return Err(ClientError::Protocol("conflicting content-length"));
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked framing applies when chunked is the last coding.
            chunked = header
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let keep_alive = if http11 {
        !close
    } else {
        keep_alive_token && !close
    };
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    Ok((status, framing, keep_alive))
}

fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that reads one request head at a time and answers each with the next
    /// canned response, then closes once the list is exhausted.
    async fn canned(responses: Vec<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut pending = Vec::new();
            for response in responses {
                while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 1024];
                    let n = socket.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&chunk[..n]);
                }
                let at = pending.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                pending.drain(..at + 4);
                // Byte by byte for the first response, to exercise partial parsing.
                if pending.is_empty() && response.len() < 200 {
                    for byte in response {
                        socket.write_all(std::slice::from_ref(byte)).await.unwrap();
                        socket.flush().await.unwrap();
                    }
                } else {
                    socket.write_all(response).await.unwrap();
                }
            }
        });
        addr
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    #[tokio::test]
    async fn reads_length_chunked_interim_and_empty_bodies_on_one_connection() {
        let addr = canned(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: t\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 500 Oops\r\nConnection: close\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        let mut conn = Connection::connect(addr).await.unwrap();
        let expected = [
            (200, 5, true),
            (201, 19, true),
            (404, 2, true),
            (204, 0, true),
            (500, 0, false),
        ];
        for (status, body_bytes, keep_alive) in expected {
            let response = conn.exchange(GET).await.unwrap();
            assert_eq!(
                response,
                Response {
                    status,
                    body_bytes,
                    keep_alive
                }
            );
        }
        assert!(matches!(conn.exchange(GET).await, Err(ClientError::Closed)));
    }

    #[tokio::test]
    async fn reads_a_body_that_runs_until_close() {
        let addr = canned(vec![b"HTTP/1.0 200 OK\r\n\r\nuntil the end"]).await;
        let mut conn = Connection::connect(addr).await.unwrap();
        let response = conn.exchange(GET).await.unwrap();
        assert_eq!(
            response,
            Response {
                status: 200,
                body_bytes: 13,
                keep_alive: false
            }
        );
    }

    #[tokio::test]
    async fn large_bodies_are_counted_not_kept() {
        static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let big = BIG.get_or_init(|| {
            let mut r = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n".to_vec();
            r.resize(r.len() + 1_000_000, b'x');
            r
        });
        let addr = canned(vec![big.as_slice(), big.as_slice()]).await;
        let mut conn = Connection::connect(addr).await.unwrap();
        for _ in 0..2 {
            assert_eq!(conn.exchange(GET).await.unwrap().body_bytes, 1_000_000);
        }
        assert_eq!(conn.buf.len(), INITIAL_BUFFER);
    }

    #[tokio::test]
    async fn malformed_responses_are_protocol_errors() {
        let addr = canned(vec![b"HTTX/1.1 200 OK\r\n\r\n"]).await;
        let mut conn = Connection::connect(addr).await.unwrap();
        assert!(matches!(
            conn.exchange(GET).await,
            Err(ClientError::Protocol(_))
        ));
        let addr = canned(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"]).await;
        let mut conn = Connection::connect(addr).await.unwrap();
        assert!(matches!(
            conn.exchange(GET).await,
            Err(ClientError::Protocol(_))
        ));
    }
}
