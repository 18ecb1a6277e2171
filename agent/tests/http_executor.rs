//! The HTTP executor against a scripted server on 127.0.0.1: retries, `Retry-After` (C07),
//! timeouts, dropped connections, concurrency and rate limits (C09), destinations, body size,
//! and redaction. Waits run on a manual clock, so no test sleeps for what it asserts.

#[path = "support/scripted.rs"]
mod scripted;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use scripted::{Answer, Server, json, status, with_header};
use tally_agent::http::{
    Executor, ExecutorConfig, HttpClient, HttpError, ManualClock, Redactor, RetryPolicy,
    SendOptions, Timeouts,
};
use tally_plugin_sdk::HttpRequest;

fn clock_at(date: &str) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(httpdate::parse_http_date(date).unwrap()))
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)))
}

fn client() -> HttpClient {
    HttpClient::new(Timeouts { connect: Duration::from_secs(10), read: Duration::from_secs(30) })
        .unwrap()
}

fn executor_with(
    server: &Server,
    clock: Arc<ManualClock>,
    client: HttpClient,
    adjust: impl FnOnce(&mut ExecutorConfig),
) -> Executor {
    let mut config = ExecutorConfig { hosts: vec![server.host()], ..ExecutorConfig::default() };
    adjust(&mut config);
    Executor::new(&client, config, clock).unwrap()
}

fn executor(server: &Server, clock: Arc<ManualClock>) -> Executor {
    executor_with(server, clock, client(), |_| {})
}

fn get(server: &Server, target: &str) -> HttpRequest {
    HttpRequest::new("GET", server.url(target), "companies")
}

/// Answers in order from a list, per target; the last answer repeats.
fn script(
    routes: Vec<(&'static str, Vec<Answer>)>,
) -> impl FnMut(&scripted::Seen) -> Answer + Send + 'static {
    let mut routes: Vec<(String, Vec<Answer>)> =
        routes.into_iter().map(|(t, a)| (t.to_string(), a)).collect();
    move |seen| {
        let path = seen.target.split('?').next().unwrap_or_default();
        let index = (routes.iter().position(|(target, _)| *target == seen.target))
            .or_else(|| routes.iter().position(|(target, _)| target == path))
            .unwrap_or_else(|| panic!("unexpected request {}", seen.target));
        let answers = &mut routes[index].1;
        if answers.len() > 1 { answers.remove(0) } else { answers[0].clone() }
    }
}

#[tokio::test]
async fn c07_retry_after_in_seconds_and_as_http_date() {
    let server = Server::start(script(vec![
        ("/companies?page=1", vec![json("[1]")]),
        ("/companies?page=2", vec![with_header(429, "Retry-After", "2"), json("[2]")]),
        (
            "/companies?page=3",
            vec![with_header(429, "Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT"), json("[3]")],
        ),
    ]))
    .await;
    // After the 2 s wait for page 2, the mock clock reads 07:27:55 when page 3 is throttled.
    let clock = clock_at("Wed, 21 Oct 2026 07:27:53 GMT");
    let executor = executor(&server, clock.clone());

    let mut attempts = Vec::new();
    for page in 1..=3 {
        let sent = executor
            .send(&get(&server, &format!("/companies?page={page}")), SendOptions::default())
            .await
            .unwrap();
        assert_eq!(sent.response.status, 200);
        assert_eq!(sent.response.body, format!("[{page}]"));
        attempts.push(sent.attempts);
    }

    assert_eq!(clock.sleeps(), vec![Duration::from_secs(2), Duration::from_secs(5)]);
    assert_eq!(attempts, vec![1, 2, 2]);
    assert_eq!(server.count("/companies?page=1"), 1);
    assert_eq!(server.count("/companies?page=2"), 2);
    assert_eq!(server.count("/companies?page=3"), 2);
}

#[tokio::test]
async fn c07_past_date_waits_nothing_and_long_waits_are_capped() {
    let server = Server::start(script(vec![
        (
            "/past",
            vec![with_header(429, "Retry-After", "Wed, 21 Oct 2026 07:00:00 GMT"), json("[]")],
        ),
        ("/long", vec![with_header(503, "Retry-After", "86400"), json("[]")]),
    ]))
    .await;
    let clock = clock_at("Wed, 21 Oct 2026 07:27:55 GMT");
    let executor = executor(&server, clock.clone());

    executor.send(&get(&server, "/past"), SendOptions::default()).await.unwrap();
    executor.send(&get(&server, "/long"), SendOptions::default()).await.unwrap();

    assert_eq!(clock.sleeps(), vec![Duration::ZERO, Duration::from_secs(300)]);
}

#[tokio::test]
async fn c07_malformed_retry_after_falls_back_to_backoff() {
    let server = Server::start(script(vec![(
        "/x",
        vec![with_header(429, "Retry-After", "soon"), json("[]")],
    )]))
    .await;
    let clock = clock();
    let executor = executor(&server, clock.clone());

    let sent = executor.send(&get(&server, "/x"), SendOptions::default()).await.unwrap();

    assert_eq!((sent.response.status, sent.attempts), (200, 2));
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 1);
    assert!(sleeps[0] <= RetryPolicy::default().backoff_ceiling(1), "{sleeps:?}");
}

#[tokio::test]
async fn gateway_errors_are_retried_and_500_goes_back_to_the_plugin() {
    let server = Server::start(script(vec![
        ("/flaky", vec![status(502), status(503), status(504), json("[]")]),
        ("/broken", vec![status(500)]),
    ]))
    .await;
    let clock = clock();
    let executor = executor(&server, clock.clone());

    let sent = executor.send(&get(&server, "/flaky"), SendOptions::default()).await.unwrap();
    assert_eq!((sent.response.status, sent.attempts), (200, 4));

    let sent = executor.send(&get(&server, "/broken"), SendOptions::default()).await.unwrap();
    assert_eq!((sent.response.status, sent.attempts), (500, 1));

    let policy = RetryPolicy::default();
    for (retry, wait) in clock.sleeps().into_iter().enumerate() {
        assert!(wait <= policy.backoff_ceiling(retry as u32 + 1), "retry {retry}: {wait:?}");
    }
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit_and_return_the_last_response() {
    let server = Server::start(script(vec![("/down", vec![status(503)])])).await;
    let executor = executor_with(&server, clock(), client(), |c| {
        c.retry = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
    });

    let sent = executor.send(&get(&server, "/down"), SendOptions::default()).await.unwrap();

    assert_eq!((sent.response.status, sent.attempts), (503, 3));
    assert_eq!(server.count("/down"), 3);
}

#[tokio::test]
async fn c10_probe_requests_are_not_retried_on_server_errors() {
    let server = Server::start(script(vec![("/probe", vec![status(503), json("[]")])])).await;
    let executor = executor(&server, clock());
    let probe = SendOptions { retry_server_errors: false, replay_safe: true };

    let sent = executor.send(&get(&server, "/probe"), probe).await.unwrap();

    assert_eq!((sent.response.status, sent.attempts), (503, 1));
}

#[tokio::test]
async fn slow_response_times_out_and_is_retried() {
    let server = Server::start(script(vec![(
        "/slow",
        vec![Answer::Slow(Duration::from_secs(5), Box::new(json("[\"late\"]"))), json("[\"ok\"]")],
    )]))
    .await;
    let quick = HttpClient::new(Timeouts {
        connect: Duration::from_secs(10),
        read: Duration::from_millis(300),
    })
    .unwrap();
    let executor = executor_with(&server, clock(), quick, |_| {});

    let sent = executor.send(&get(&server, "/slow"), SendOptions::default()).await.unwrap();

    assert_eq!(sent.response.body, "[\"ok\"]");
    assert!(sent.attempts >= 2, "{sent:?}");
}

#[tokio::test]
async fn dropped_connections_are_retried_when_replay_is_safe() {
    let server = Server::start(script(vec![
        ("/drop", vec![Answer::Drop, json("[1]")]),
        ("/cut", vec![Answer::DropMidBody, json("[2]")]),
    ]))
    .await;
    let executor = executor(&server, clock());

    let sent = executor.send(&get(&server, "/drop"), SendOptions::default()).await.unwrap();
    assert_eq!((sent.response.body.as_str(), sent.attempts), ("[1]", 2));
    let sent = executor.send(&get(&server, "/cut"), SendOptions::default()).await.unwrap();
    assert_eq!((sent.response.body.as_str(), sent.attempts), ("[2]", 2));
}

#[tokio::test]
async fn a_write_that_may_have_been_applied_is_not_sent_again() {
    let server = Server::start(script(vec![("/adjust", vec![Answer::Drop, json("{}")])])).await;
    let executor = executor(&server, clock());
    let request = HttpRequest::new("POST", server.url("/adjust"), "adjustments");
    let once = SendOptions { retry_server_errors: true, replay_safe: false };

    let error = executor.send(&request, once).await.unwrap_err();

    assert!(matches!(error, HttpError::Transport { attempts: 1, .. }), "{error}");
    assert!(error.to_string().contains("may apply it twice"), "{error}");
    assert_eq!(server.count("/adjust"), 1);
}

#[tokio::test]
async fn c09_per_endpoint_limit_holds_until_bodies_are_read() {
    let body = format!("[{}]", vec!["0"; 2000].join(","));
    let answer = Answer::HoldUntil(2, Box::new(json(body)));
    let server = Server::start(move |_| answer.clone()).await;
    let executor = Arc::new(executor_with(&server, clock(), client(), |c| {
        c.max_concurrency = 8;
        c.per_endpoint_concurrency = Some(2);
    }));

    let mut tasks = Vec::new();
    for n in 0..6 {
        let executor = executor.clone();
        let request = HttpRequest::new("POST", server.url(&format!("/adjust/{n}")), "adjustments");
        tasks.push(tokio::spawn(async move {
            executor.send(&request, SendOptions::default()).await.unwrap().response.status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }

    assert_eq!(server.seen().len(), 6);
    assert_eq!(server.max_in_flight(), 2);
}

#[tokio::test]
async fn session_limit_spans_endpoints() {
    let server =
        Server::start(|_| Answer::Slow(Duration::from_millis(100), Box::new(json("[]")))).await;
    let executor = Arc::new(executor_with(&server, clock(), client(), |c| {
        c.max_concurrency = 1;
    }));

    let mut tasks = Vec::new();
    for n in 0..3 {
        let executor = executor.clone();
        let request = HttpRequest::new("GET", server.url(&format!("/e{n}")), format!("e{n}"));
        tasks.push(tokio::spawn(async move {
            executor.send(&request, SendOptions::default()).await.unwrap().response.status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }

    assert_eq!(server.max_in_flight(), 1);
}

#[tokio::test]
async fn rate_limit_waits_before_exceeding_requests_per_minute() {
    let server = Server::start(|_| json("[]")).await;
    let clock = clock();
    let executor = executor_with(&server, clock.clone(), client(), |c| {
        c.requests_per_minute = Some(2);
    });

    for n in 0..5 {
        executor.send(&get(&server, &format!("/r{n}")), SendOptions::default()).await.unwrap();
    }

    assert_eq!(clock.sleeps(), vec![Duration::from_secs(60), Duration::from_secs(60)]);
    assert_eq!(server.seen().len(), 5);
}

#[tokio::test]
async fn requests_to_undeclared_hosts_are_refused_before_sending() {
    let server = Server::start(|_| json("[]")).await;
    let other = Server::start(|_| json("[]")).await;
    let executor = executor(&server, clock());

    let error = executor.send(&get(&other, "/steal"), SendOptions::default()).await.unwrap_err();
    assert!(matches!(error, HttpError::HostNotAllowed { .. }), "{error}");
    assert!(error.to_string().contains(&server.host()), "{error}");

    let plain = HttpRequest::new("GET", "http://api.example.com/x", "x");
    let error = executor.send(&plain, SendOptions::default()).await.unwrap_err();
    assert!(matches!(error, HttpError::InsecureScheme { .. }), "{error}");

    assert_eq!(other.seen().len(), 0);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let server = Server::start(script(vec![
        ("/announced", vec![Answer::Announce(64 * 1024 * 1024 + 1)]),
        ("/unframed", vec![Answer::Unframed("x".repeat(4096))]),
    ]))
    .await;

    // The default limit, refused from Content-Length before any of the body is read.
    let executor = executor(&server, clock());
    let error = executor.send(&get(&server, "/announced"), SendOptions::default()).await;
    let error = error.unwrap_err();
    assert!(matches!(error, HttpError::TooLarge { limit: 67_108_864, .. }), "{error}");

    // A body without a length, refused while it is read.
    let executor = executor_with(&server, clock(), client(), |c| c.max_body_bytes = 1024);
    let error = executor.send(&get(&server, "/unframed"), SendOptions::default()).await;
    let error = error.unwrap_err();
    assert!(matches!(error, HttpError::TooLarge { limit: 1024, .. }), "{error}");
    assert_eq!(server.count("/announced") + server.count("/unframed"), 2);
}

/// A `MakeWriter` collecting formatted log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The process-wide log capture. A global subscriber, because a thread-scoped one misses
    /// events whose callsites other test threads already cached as uninteresting.
    fn capture() -> Logs {
        static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter("tally_agent=trace")
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            logs
        })
        .clone()
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn logs_show_each_attempt_without_secrets() {
    let secret = "s3cr3t-T0ken/with+chars";
    let server = Server::start(script(vec![(
        "/companies",
        vec![with_header(503, "Retry-After", "1"), Answer::Drop, json("[]")],
    )]))
    .await;
    let logs = Logs::capture();
    let executor = executor_with(&server, clock(), client(), |c| {
        c.redactor = Redactor::new([secret]);
    });
    let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let request = HttpRequest::new(
        "GET",
        format!("{}?apikey=abc123&ref={encoded}", server.url("/companies")),
        "redaction-check",
    )
    .header("Authorization", format!("Bearer {secret}"));

    let sent = executor.send(&request, SendOptions::default()).await.unwrap();
    let other = Server::start(|_| json("[]")).await;
    let refused = HttpRequest::new("GET", format!("{}?token={secret}", other.url("/x")), "x");
    executor.send(&refused, SendOptions::default()).await.unwrap_err();

    assert_eq!(sent.attempts, 3);
    assert_eq!(server.seen()[0].header("authorization"), Some(format!("Bearer {secret}").as_str()));
    let all = logs.text();
    let port = server.addr.port().to_string();
    let lines: Vec<&str> = all.lines().filter(|l| l.contains(&port)).collect();
    let text = lines.join("\n");
    for needle in ["GET", "endpoint=redaction-check", "status=503", "status=200", "attempt=3"] {
        assert!(text.contains(needle), "{needle:?} missing from logs:\n{text}");
    }
    assert!(text.contains("duration_ms="), "{text}");
    assert!(text.contains("REDACTED"), "{text}");
    for secret_form in [secret, encoded.as_str(), "s3cr3t", "abc123"] {
        assert!(!all.contains(secret_form), "{secret_form:?} leaked into logs:\n{all}");
    }
}
