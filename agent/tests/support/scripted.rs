//! A scripted HTTP/1.1 server on 127.0.0.1 for executor and plugin-host tests.
//!
//! Each request is answered by the test's script, which can also stall, drop the connection or
//! cut a body short: faults a framework server would not produce. It records every request and
//! the most requests it ever had in flight, counting a request as in flight until the last
//! byte of its body is written.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Answer {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Close the connection without answering.
    Drop,
    /// Announce a body, send part of it, close.
    DropMidBody,
    /// A 200 without Content-Length: the body ends when the connection closes.
    Unframed(String),
    /// A 200 announcing a body of this many bytes, then closing without sending it.
    Announce(u64),
    /// Wait, then answer.
    Slow(Duration, Box<Answer>),
    /// Wait (at most 5 s) until this many requests are in flight, then answer; the body is
    /// written in two halves with a pause between them.
    HoldUntil(usize, Box<Answer>),
}

pub fn status(status: u16) -> Answer {
    Answer::Respond { status, headers: vec![], body: String::new() }
}

pub fn json(body: impl Into<String>) -> Answer {
    Answer::Respond {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.into(),
    }
}

pub fn with_header(status: u16, name: &str, value: &str) -> Answer {
    Answer::Respond { status, headers: vec![(name.into(), value.into())], body: String::new() }
}

type Script = Box<dyn FnMut(&Seen) -> Answer + Send>;

struct State {
    script: Mutex<Script>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

pub struct Server {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Server {
    pub async fn start(script: impl FnMut(&Seen) -> Answer + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            script: Mutex::new(Box::new(script)),
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let accept_state = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, accept_state.clone()));
            }
        });
        Server { addr, state }
    }

    /// `127.0.0.1:port`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests whose path and query equal `target`.
    pub fn count(&self, target: &str) -> usize {
        self.seen().iter().filter(|s| s.target == target).count()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn serve(stream: TcpStream, state: Arc<State>) {
    let mut stream = BufReader::new(stream);
    loop {
        let Some(seen) = read_request(&mut stream).await else { return };
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        state.seen.lock().unwrap().push(seen.clone());
        let answer = (state.script.lock().unwrap())(&seen);
        let keep = answer_with(stream.get_mut(), answer, &state).await;
        if !keep {
            return;
        }
    }
}

/// Writes `answer`; false when the connection must close.
async fn answer_with(stream: &mut TcpStream, answer: Answer, state: &State) -> bool {
    let done = || {
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
    };
    match answer {
        Answer::Respond { status, headers, body } => {
            write_split(stream, status, &headers, &body, Duration::ZERO, done).await
        }
        Answer::Drop => {
            done();
            let _ = stream.shutdown().await;
            false
        }
        Answer::DropMidBody => {
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[{\"id\":1";
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.flush().await;
            done();
            let _ = stream.shutdown().await;
            false
        }
        Answer::Unframed(body) => {
            let text = format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{body}");
            let _ = stream.write_all(text.as_bytes()).await;
            done();
            let _ = stream.shutdown().await;
            false
        }
        Answer::Announce(length) => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.flush().await;
            done();
            let _ = stream.shutdown().await;
            false
        }
        Answer::Slow(delay, inner) => {
            tokio::time::sleep(delay).await;
            Box::pin(answer_with(stream, *inner, state)).await
        }
        Answer::HoldUntil(wanted, inner) => {
            for _ in 0..500 {
                if state.in_flight.load(Ordering::SeqCst) >= wanted {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            match *inner {
                Answer::Respond { status, headers, body } => {
                    let pause = Duration::from_millis(50);
                    write_split(stream, status, &headers, &body, pause, done).await
                }
                other => Box::pin(answer_with(stream, other, state)).await,
            }
        }
    }
}

/// Head and first half of the body, a pause, the in-flight count lowered, the rest.
async fn write_split(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &str,
    pause: Duration,
    done: impl FnOnce(),
) -> bool {
    let mut head = format!("HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let half = body.len() / 2;
    let first = [head.as_bytes(), &body.as_bytes()[..half]].concat();
    if stream.write_all(&first).await.is_err() {
        done();
        return false;
    }
    let _ = stream.flush().await;
    tokio::time::sleep(pause).await;
    done();
    stream.write_all(&body.as_bytes()[half..]).await.is_ok() && stream.flush().await.is_ok()
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(Seen { method, target, headers })
}
