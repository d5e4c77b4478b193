//! `tonic-server [--plain] PORT`: a bare tonic server for `medic.agent.v1.AgentService/Connect`.
//!
//! Listens on 127.0.0.1:PORT (bound before `ready` is printed), current-thread tokio runtime
//! like the agent. Every stream: read the `Hello`, answer one `Welcome`, then read (and drop)
//! whatever the agent sends until it hangs up. Nothing is stored; there is no authentication.
//! Two variants, to see what the usual handler shape costs per stream:
//!
//! - default ("tuned"): the handler awaits the Hello itself and returns a response stream that
//!   yields the Welcome, then drains the inbound stream while it is polled (no extra task, no
//!   channel); the server's HTTP/2 receive windows are small and fixed (16 KiB per stream,
//!   32 KiB per connection), enough for heartbeats;
//! - `--plain`: the common tonic shape: a task spawned per stream reads the inbound messages and
//!   sends on an mpsc channel whose receiver is the response stream; tonic's default windows.

mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/medic.agent.v1.rs"));
}

use pb::agent_service_server::{AgentService, AgentServiceServer};
use pb::{AgentMessage, ServerMessage, Welcome};
use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

const USAGE: &str = "Usage: tonic-server [--plain] PORT

A bare tonic server for medic.agent.v1.AgentService/Connect on 127.0.0.1:PORT: reads the
Hello, answers a Welcome, then drops what the agent sends. Prints `ready` once listening.

  --plain    a task and an mpsc channel per stream, default HTTP/2 windows (without it: the
             response stream drains the inbound one, 16 KiB stream / 32 KiB connection windows)";

fn welcome() -> ServerMessage {
    ServerMessage {
        body: Some(pb::server_message::Body::Welcome(Welcome {
            session_id: "bare".into(),
            heartbeat_interval_seconds: 30,
            server_version: String::new(),
        })),
    }
}

type Outbound = Pin<Box<dyn Stream<Item = Result<ServerMessage, Status>> + Send>>;

/// The tuned variant: no task and no channel per stream.
struct Tuned;

#[tonic::async_trait]
impl AgentService for Tuned {
    type ConnectStream = Outbound;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let mut inbound = request.into_inner();
        if inbound.message().await?.is_none() {
            return Err(Status::invalid_argument("the stream ended before the Hello"));
        }
        // Polling the response stream polls the inbound one: heartbeats are read and dropped,
        // and the response ends when the agent hangs up (or with the inbound error).
        let drain = inbound.filter_map(|message| message.err().map(Err));
        Ok(Response::new(Box::pin(tokio_stream::once(Ok(welcome())).chain(drain))))
    }
}

/// The plain variant: a reader task per stream feeding an mpsc channel.
struct Plain;

#[tonic::async_trait]
impl AgentService for Plain {
    type ConnectStream = ReceiverStream<Result<ServerMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            if !matches!(inbound.message().await, Ok(Some(_))) {
                return;
            }
            if tx.send(Ok(welcome())).await.is_err() {
                return;
            }
            while let Ok(Some(_)) = inbound.message().await {}
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn serve(plain: bool, port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let incoming = TcpIncoming::bind(([127, 0, 0, 1], port).into())?.with_nodelay(Some(true));
    println!("ready");
    std::io::stdout().flush()?;
    if plain {
        Server::builder()
            .add_service(AgentServiceServer::new(Plain))
            .serve_with_incoming(incoming)
            .await?;
    } else {
        Server::builder()
            .initial_stream_window_size(16 * 1024)
            .initial_connection_window_size(32 * 1024)
            .http2_adaptive_window(Some(false))
            .add_service(AgentServiceServer::new(Tuned))
            .serve_with_incoming(incoming)
            .await?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut plain = false;
    let mut port = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--plain" => plain = true,
            _ => match arg.parse::<u16>() {
                Ok(p) if port.is_none() => port = Some(p),
                _ => {
                    eprintln!("tonic-server: unexpected argument: {arg}\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let Some(port) = port else {
        eprintln!("tonic-server: PORT is required\n\n{USAGE}");
        return ExitCode::from(2);
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Into::into)
        .and_then(|runtime| runtime.block_on(serve(plain, port)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tonic-server: {e}");
            ExitCode::from(1)
        }
    }
}
