//! A mock OpenAI-compatible server for tests: axum on `127.0.0.1` (ephemeral port) on a
//! background tokio runtime thread, answering `POST /v1/chat/completions` and
//! `POST /v1/embeddings` deterministically, with per-test fault injection (the first N
//! requests answer 429, 500, malformed JSON, a missing field, the wrong count or
//! dimension, 400, or answer too slowly) and counters of what it received.
//!
//! Include it from a test file with
//! `#[path = "support/mock_openai.rs"] mod mock_openai;`
//! and start one server per test: `let srv = MockServer::start(MockConfig::default());`
//! then point a client at `srv.base_url` (already ending in `/v1`). Dropping the server
//! stops it at once (in-flight slow answers are abandoned).
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the faulty requests do.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Nothing: every request is answered normally.
    None,
    /// HTTP 429, with this `Retry-After` header value if given.
    RateLimited { retry_after: Option<String> },
    /// HTTP 500 with an OpenAI-style error body.
    ServerError,
    /// HTTP 400 with the error message [`BAD_REQUEST_MESSAGE`].
    BadRequest,
    /// HTTP 200 with a truncated JSON body.
    Malformed,
    /// HTTP 200 with valid JSON lacking the answer (`message.content` / `data`).
    MissingField,
    /// Embeddings: one vector fewer than texts sent (chat answers normally).
    WrongCount,
    /// Embeddings: vectors of dimension `dim + 1` (chat answers normally).
    WrongDim,
    /// Sleeps this long, then answers normally.
    Slow { ms: u64 },
}

/// The error text of [`Fault::BadRequest`].
pub const BAD_REQUEST_MESSAGE: &str = "mock rejects this request";

/// How the mock behaves.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// The fault of the first `faulty_requests` requests (counted over both endpoints).
    pub fault: Fault,
    pub faulty_requests: usize,
    /// Delay before every answer (to make concurrent requests overlap).
    pub latency_ms: u64,
    /// Embedding dimension.
    pub dim: usize,
    /// Return `data[]` of embeddings in reverse order (with correct `index` fields).
    pub reverse_data: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            fault: Fault::None,
            faulty_requests: 0,
            latency_ms: 0,
            dim: 8,
            reverse_data: false,
        }
    }
}

impl MockConfig {
    /// The first `n` requests fail with `fault`.
    pub fn failing(fault: Fault, n: usize) -> Self {
        Self {
            fault,
            faulty_requests: n,
            ..Self::default()
        }
    }
}

/// One request as the mock saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: &'static str,
    pub at: Instant,
    pub authorization: Option<String>,
    pub body: Value,
}

struct Shared {
    cfg: MockConfig,
    total: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

/// Decrements the in-flight counter when a handler finishes (or is dropped).
struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running mock server; stops when dropped.
pub struct MockServer {
    /// `http://127.0.0.1:<port>/v1`
    pub base_url: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockServer {
    /// Binds `127.0.0.1:0` and serves on a background thread.
    pub fn start(cfg: MockConfig) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            cfg,
            total: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = Router::new()
                    .route("/v1/chat/completions", post(chat))
                    .route("/v1/embeddings", post(embeddings))
                    .with_state(state);
                tokio::select! {
                    _ = axum::serve(listener, app).into_future() => {}
                    _ = rx => {}
                }
            });
            rt.shutdown_background();
        });
        Self {
            base_url: format!("http://{addr}/v1"),
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Requests received on both endpoints.
    pub fn requests(&self) -> usize {
        self.shared.total.load(Ordering::SeqCst)
    }

    /// Requests received on one path (`"/v1/chat/completions"` or `"/v1/embeddings"`).
    pub fn requests_to(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }

    /// The most requests being handled at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The deterministic chat answer to a user prompt: a JSON object naming its first words.
pub fn mock_answer(user_prompt: &str) -> String {
    let head: Vec<&str> = user_prompt.split_whitespace().take(4).collect();
    let head = head.join(" ");
    json!({
        "summarization": format!("A profile about: {head}"),
        "reasoning": format!("The prompt starts with '{head}'."),
    })
    .to_string()
}

/// The deterministic embedding of a text: `dim` values in [-1, 1) from its FNV-1a hash.
pub fn mock_embedding(text: &str, dim: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    (0..dim)
        .map(|_| {
            h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = h;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

fn error_body(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "mock_error"}});
    (status, axum::Json(body)).into_response()
}

/// Records the request and decides its fault; `Err` is an answer to send as is.
async fn admit<'a>(
    st: &'a Shared,
    path: &'static str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Value, Fault, InFlight<'a>), Response> {
    let ordinal = st.total.fetch_add(1, Ordering::SeqCst);
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let guard = InFlight(st);
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    st.seen.lock().unwrap().push(Seen {
        path,
        at: Instant::now(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: parsed.as_ref().cloned().unwrap_or(Value::Null),
    });
    if st.cfg.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(st.cfg.latency_ms)).await;
    }
    let Ok(value) = parsed else {
        return Err(error_body(
            StatusCode::BAD_REQUEST,
            "request body is not JSON",
        ));
    };
    let fault = if ordinal < st.cfg.faulty_requests {
        st.cfg.fault.clone()
    } else {
        Fault::None
    };
    match &fault {
        Fault::RateLimited { retry_after } => {
            let mut r = error_body(StatusCode::TOO_MANY_REQUESTS, "rate limited by mock");
            if let Some(v) = retry_after {
                r.headers_mut()
                    .insert("retry-after", v.parse().expect("header value"));
            }
            Err(r)
        }
        Fault::ServerError => Err(error_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "mock internal error",
        )),
        Fault::BadRequest => Err(error_body(StatusCode::BAD_REQUEST, BAD_REQUEST_MESSAGE)),
        Fault::Malformed => Err((
            StatusCode::OK,
            [("content-type", "application/json")],
            r#"{"choices": [{"message": {"content": "cut"#,
        )
            .into_response()),
        Fault::Slow { ms } => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            Ok((value, Fault::None, guard))
        }
        _ => Ok((value, fault, guard)),
    }
}

async fn chat(State(st): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let (req, fault, _guard) = match admit(&st, "/v1/chat/completions", &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if fault == Fault::MissingField {
        return axum::Json(json!({"choices": [{"message": {"role": "assistant"}}]}))
            .into_response();
    }
    let user = req["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    axum::Json(json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "model": req["model"],
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": mock_answer(&user)},
            "finish_reason": "stop",
        }],
    }))
    .into_response()
}

async fn embeddings(State(st): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let (req, fault, _guard) = match admit(&st, "/v1/embeddings", &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if fault == Fault::MissingField {
        return axum::Json(json!({"object": "list"})).into_response();
    }
    let texts: Vec<String> = match &req["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(xs) => xs
            .iter()
            .map(|x| x.as_str().unwrap_or("").to_string())
            .collect(),
        _ => return error_body(StatusCode::BAD_REQUEST, "`input` must be text or texts"),
    };
    let dim = st.cfg.dim + usize::from(fault == Fault::WrongDim);
    let mut data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": mock_embedding(t, dim)}))
        .collect();
    if fault == Fault::WrongCount {
        data.pop();
    }
    if st.cfg.reverse_data {
        data.reverse();
    }
    axum::Json(json!({"object": "list", "model": req["model"], "data": data})).into_response()
}
