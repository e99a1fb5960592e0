//! bare-forwarder: the floor of a monoio HTTP/1.1 proxy, for mesh-bench to measure beside
//! meshd. Per downstream connection it opens one upstream connection and relays each request
//! head and each `content-length` response through it, with nothing else: no routing, pool,
//! timeouts, limits, logs or metrics. Only for GETs without a body and responses with a
//! length, which is what the benchmark sends and its upstream answers. The same runtime setup
//! as meshd's workers (io_uring with COOP_TASKRUN, SINGLE_ISSUER and DEFER_TASKRUN, or epoll).

use std::io;
use std::net::SocketAddr;

use clap::Parser;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

/// Relay HTTP/1.1 from `--listen` to `--upstream` with nothing but reads and writes.
#[derive(Debug, Parser)]
#[command(name = "bare-forwarder")]
struct Args {
    /// Where to accept connections (port 0 picks one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The upstream every connection is relayed to.
    #[arg(long)]
    upstream: SocketAddr,
    /// `uring` or `epoll`.
    #[arg(long, default_value = "uring")]
    io_driver: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.io_driver.as_str() {
        "uring" => {
            let mut setup = io_uring::IoUring::builder();
            setup
                .setup_coop_taskrun()
                .setup_single_issuer()
                .setup_defer_taskrun();
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .uring_builder(setup)
                .with_entries(1024)
                .build()
                .and_then(|mut rt| rt.block_on(serve(args.listen, args.upstream)))
        }
        "epoll" => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .and_then(|mut rt| rt.block_on(serve(args.listen, args.upstream))),
        other => Err(io::Error::other(format!(
            "--io-driver {other}: use uring or epoll"
        ))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare-forwarder: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (down, _) = listener.accept().await?;
        monoio::spawn(async move {
            if let Ok(up) = TcpStream::connect(upstream).await {
                let _ = relay(down, up).await;
            }
        });
    }
}

/// Relays request heads down → up and length-framed responses up → down until either side
/// closes or sends what this forwarder does not handle.
async fn relay(mut down: TcpStream, mut up: TcpStream) -> io::Result<()> {
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (mut request, mut response) = (Vec::with_capacity(16384), Vec::with_capacity(16384));
    loop {
        let head = read_until(&mut down, &mut request, request_len).await?;
        request = relay_bytes(&mut up, request, head).await?;
        let whole = read_until(&mut up, &mut response, response_len).await?;
        response = relay_bytes(&mut down, response, whole).await?;
    }
}

/// Reads into `buf` until `complete` says how long its first message is; that length.
async fn read_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    complete: fn(&[u8]) -> io::Result<Option<usize>>,
) -> io::Result<usize> {
    loop {
        if let Some(len) = complete(buf)? {
            return Ok(len);
        }
        let (read, filled) = stream.read(std::mem::take(buf)).await;
        *buf = filled;
        if read? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len());
        }
    }
}

/// Writes the first `len` bytes of `buf` to `stream`; the buffer with them removed.
async fn relay_bytes(stream: &mut TcpStream, buf: Vec<u8>, len: usize) -> io::Result<Vec<u8>> {
    let (written, slice) = stream
        .write_all(monoio::buf::IoBuf::slice(buf, 0..len))
        .await;
    written?;
    let mut buf = slice.into_inner();
    buf.drain(..len);
    Ok(buf)
}

fn request_len(buf: &[u8]) -> io::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    match httparse::Request::new(&mut headers).parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

fn response_len(buf: &[u8]) -> io::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let body = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no content-length"))?;
    Ok((buf.len() >= head + body).then_some(head + body))
}
