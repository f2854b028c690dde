//! Embedding skyrocket in an existing actix system: start it, ask its status, restart it and
//! stop it by sending messages. Run with `cargo run --example embed`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use actix::prelude::*;
use http::StatusCode;
use skyrocket::{Config, Environ, Input, Reply, Restart, Server, Start, Status, Stop};

fn hello(_env: &Environ, _input: &mut Input<'_>) -> Reply {
    Reply::text(StatusCode::OK, "Hello from an embedded skyrocket\n")
}

/// One request with a plain blocking client (run off the actix thread).
async fn fetch(addr: SocketAddr) -> std::io::Result<String> {
    actix_rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: embed\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })
    .await?
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let config = Config::builder()
        .bind("127.0.0.1:0")
        .app(hello)
        .min_threads(2)
        .handle_signals(false)
        .build()?;
    let server = Server::new(config).start();
    let addrs = server.send(Start).await??;
    println!("started on {addrs:?}");
    println!("{}", fetch(addrs[0]).await?.lines().next().unwrap_or(""));
    println!("status: {:?}", server.send(Status).await?);
    server.send(Restart).await??;
    println!(
        "restarted; same socket: {}",
        fetch(addrs[0]).await?.lines().next().unwrap_or("")
    );
    server.send(Stop { graceful: true }).await?;
    println!("stopped: {:?}", server.send(Status).await?);
    Ok(())
}
