//! The OpenAI-compatible clients (`darec::text::openai`) against a local mock server:
//! answers and their order, concurrency, the retry policy (429, 500, malformed answers,
//! timeouts, connection errors, non-retryable 400, exhaustion), rate limiting, embedding
//! batches and ordering, and the API key header.

#[path = "support/mock_openai.rs"]
mod mock_openai;

use darec::text::openai::{OpenAiChat, OpenAiConfig, OpenAiEmbedder};
use darec::text::{ChatModel, ChatRequest, TextEmbedder};
use mock_openai::{mock_answer, mock_embedding, Fault, MockConfig, MockServer};
use std::time::{Duration, Instant};

const CHAT: &str = "/v1/chat/completions";
const EMB: &str = "/v1/embeddings";

/// Fast settings: short timeout and backoff so failing paths take milliseconds.
fn cfg(srv: &MockServer) -> OpenAiConfig {
    OpenAiConfig {
        concurrency: 2,
        max_retries: 3,
        timeout_s: 2.0,
        backoff_initial_ms: 5,
        backoff_max_ms: 20,
        ..OpenAiConfig::new(&srv.base_url, "mock-model")
    }
}

fn req(user: &str) -> ChatRequest {
    ChatRequest {
        system: "You write profiles.".into(),
        user: user.into(),
        max_tokens: 64,
        temperature: 0.0,
        seed: 7,
    }
}

fn prompts(n: usize) -> Vec<ChatRequest> {
    (0..n)
        .map(|i| req(&format!("item {i} is a film about number {i}")))
        .collect()
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("profile text {i}")).collect()
}

#[test]
fn chat_answers_come_back_in_order() {
    let srv = MockServer::start(MockConfig {
        latency_ms: 10,
        ..MockConfig::default()
    });
    let chat = OpenAiChat::new(OpenAiConfig {
        concurrency: 3,
        ..cfg(&srv)
    })
    .unwrap();
    let reqs = prompts(7);
    let out = chat.complete_batch(&reqs);
    assert_eq!(out.len(), 7);
    for (r, a) in reqs.iter().zip(&out) {
        assert_eq!(a.as_ref().unwrap(), &mock_answer(&r.user));
    }
    assert_eq!(srv.requests_to(CHAT), 7);
    // The body carries the documented fields.
    let b = &srv.seen()[0].body;
    assert_eq!(b["model"], "mock-model");
    assert_eq!(b["messages"][0]["role"], "system");
    assert_eq!(b["messages"][0]["content"], "You write profiles.");
    assert_eq!(b["messages"][1]["role"], "user");
    assert_eq!(b["max_tokens"], 64);
    assert_eq!(b["temperature"], 0.0);
    assert_eq!(b["seed"], 7);
    assert!(chat.complete_batch(&[]).is_empty());
}

#[test]
fn concurrency_overlaps_requests_and_one_means_one() {
    let srv = MockServer::start(MockConfig {
        latency_ms: 100,
        ..MockConfig::default()
    });
    let chat = OpenAiChat::new(OpenAiConfig {
        concurrency: 4,
        ..cfg(&srv)
    })
    .unwrap();
    assert!(chat.complete_batch(&prompts(8)).iter().all(|r| r.is_ok()));
    let peak = srv.max_in_flight();
    assert!((2..=4).contains(&peak), "peak in flight {peak}");

    let srv1 = MockServer::start(MockConfig {
        latency_ms: 20,
        ..MockConfig::default()
    });
    let chat1 = OpenAiChat::new(OpenAiConfig {
        concurrency: 1,
        ..cfg(&srv1)
    })
    .unwrap();
    assert!(chat1.complete_batch(&prompts(4)).iter().all(|r| r.is_ok()));
    assert_eq!(srv1.max_in_flight(), 1);
}

#[test]
fn rate_limited_then_success_honours_retry_after() {
    // Retry-After: 0 overrides a 5 s backoff, so this finishes fast.
    let srv = MockServer::start(MockConfig::failing(
        Fault::RateLimited {
            retry_after: Some("0".into()),
        },
        2,
    ));
    let chat = OpenAiChat::new(OpenAiConfig {
        concurrency: 1,
        backoff_initial_ms: 5_000,
        backoff_max_ms: 5_000,
        ..cfg(&srv)
    })
    .unwrap();
    let t = Instant::now();
    let out = chat.complete(&req("hello there world")).unwrap();
    assert_eq!(out, mock_answer("hello there world"));
    assert_eq!(srv.requests(), 3);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn retry_after_is_capped_by_backoff_max() {
    let srv = MockServer::start(MockConfig::failing(
        Fault::RateLimited {
            retry_after: Some("30".into()),
        },
        1,
    ));
    let chat = OpenAiChat::new(cfg(&srv)).unwrap(); // backoff_max_ms = 20
    let t = Instant::now();
    chat.complete(&req("capped wait")).unwrap();
    assert_eq!(srv.requests(), 2);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn server_error_then_success() {
    let srv = MockServer::start(MockConfig::failing(Fault::ServerError, 2));
    let chat = OpenAiChat::new(cfg(&srv)).unwrap();
    assert_eq!(chat.complete(&req("a b c")).unwrap(), mock_answer("a b c"));
    assert_eq!(srv.requests(), 3);
}

#[test]
fn malformed_or_incomplete_answers_are_retried() {
    for fault in [Fault::Malformed, Fault::MissingField] {
        let srv = MockServer::start(MockConfig::failing(fault.clone(), 2));
        let chat = OpenAiChat::new(cfg(&srv)).unwrap();
        let got = chat.complete(&req("x y"));
        assert_eq!(got.unwrap(), mock_answer("x y"), "{fault:?}");
        assert_eq!(srv.requests(), 3, "{fault:?}");
    }
    // Always malformed: a bounded number of tries, then an error saying why.
    let srv = MockServer::start(MockConfig::failing(Fault::Malformed, usize::MAX));
    let chat = OpenAiChat::new(OpenAiConfig {
        max_retries: 2,
        ..cfg(&srv)
    })
    .unwrap();
    let msg = format!("{:#}", chat.complete(&req("x")).unwrap_err());
    assert!(msg.contains("malformed"), "{msg}");
    assert_eq!(srv.requests(), 3);
}

#[test]
fn slow_answer_times_out_and_is_retried() {
    let srv = MockServer::start(MockConfig::failing(Fault::Slow { ms: 1_500 }, 1));
    let chat = OpenAiChat::new(OpenAiConfig {
        timeout_s: 0.3,
        ..cfg(&srv)
    })
    .unwrap();
    let t = Instant::now();
    assert_eq!(
        chat.complete(&req("slow one")).unwrap(),
        mock_answer("slow one")
    );
    let took = t.elapsed();
    assert_eq!(srv.requests(), 2);
    assert!(took >= Duration::from_millis(250), "took {took:?}");
    assert!(took < Duration::from_millis(1_400), "took {took:?}");
}

#[test]
fn bad_request_fails_fast_with_the_server_message() {
    let srv = MockServer::start(MockConfig::failing(Fault::BadRequest, usize::MAX));
    let chat = OpenAiChat::new(OpenAiConfig {
        backoff_initial_ms: 5_000,
        backoff_max_ms: 5_000,
        ..cfg(&srv)
    })
    .unwrap();
    let t = Instant::now();
    let msg = format!("{:#}", chat.complete(&req("x")).unwrap_err());
    assert!(msg.contains("400"), "{msg}");
    assert!(msg.contains(mock_openai::BAD_REQUEST_MESSAGE), "{msg}");
    assert_eq!(srv.requests(), 1);
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn exhausted_retries_name_the_url_and_last_status() {
    let srv = MockServer::start(MockConfig::failing(Fault::ServerError, usize::MAX));
    let chat = OpenAiChat::new(OpenAiConfig {
        max_retries: 2,
        ..cfg(&srv)
    })
    .unwrap();
    let msg = format!("{:#}", chat.complete(&req("x")).unwrap_err());
    assert!(
        msg.contains(&format!("{}/chat/completions", srv.base_url)),
        "{msg}"
    );
    assert!(msg.contains("HTTP 500"), "{msg}");
    assert!(msg.contains("3 attempt"), "{msg}");
    assert_eq!(srv.requests(), 3);
}

#[test]
fn connection_refused_is_retried_then_reported() {
    // A port that was free a moment ago: nothing listens there now.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/v1");
    let chat = OpenAiChat::new(OpenAiConfig {
        max_retries: 2,
        backoff_initial_ms: 1,
        backoff_max_ms: 5,
        timeout_s: 1.0,
        ..OpenAiConfig::new(&url, "m")
    })
    .unwrap();
    let msg = format!("{:#}", chat.complete(&req("x")).unwrap_err());
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("3 attempt"), "{msg}");
}

#[test]
fn one_failure_does_not_fail_the_batch() {
    let srv = MockServer::start(MockConfig::failing(Fault::BadRequest, 1));
    let chat = OpenAiChat::new(OpenAiConfig {
        concurrency: 1,
        ..cfg(&srv)
    })
    .unwrap();
    let reqs = prompts(3);
    let out = chat.complete_batch(&reqs);
    assert!(out[0].is_err());
    assert_eq!(out[1].as_ref().unwrap(), &mock_answer(&reqs[1].user));
    assert_eq!(out[2].as_ref().unwrap(), &mock_answer(&reqs[2].user));
}

#[test]
fn requests_per_minute_spaces_request_starts() {
    let srv = MockServer::start(MockConfig::default());
    // 600 per minute = one start every 100 ms, shared by 4 threads.
    let chat = OpenAiChat::new(OpenAiConfig {
        concurrency: 4,
        requests_per_minute: Some(600.0),
        ..cfg(&srv)
    })
    .unwrap();
    let t = Instant::now();
    assert!(chat.complete_batch(&prompts(5)).iter().all(|r| r.is_ok()));
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(390), "took {took:?}");
    // Request k cannot reach the server before k spacing intervals have passed.
    let mut at: Vec<Instant> = srv.seen().iter().map(|s| s.at).collect();
    at.sort();
    for (k, a) in at.iter().enumerate() {
        let since = *a - t;
        assert!(
            since >= Duration::from_millis(100 * k as u64),
            "request {k} at {since:?}"
        );
    }
}

#[test]
fn embeddings_are_batched_and_ordered_by_index() {
    let srv = MockServer::start(MockConfig {
        reverse_data: true,
        latency_ms: 10,
        ..MockConfig::default()
    });
    let emb = OpenAiEmbedder::new(OpenAiConfig {
        batch_size: 4,
        concurrency: 2,
        ..cfg(&srv)
    })
    .unwrap();
    let xs = texts(10);
    let vs = emb.embed(&xs).unwrap();
    assert_eq!(srv.requests_to(EMB), 3); // ceil(10 / 4)
    assert_eq!(vs.len(), 10);
    for (t, v) in xs.iter().zip(&vs) {
        assert_eq!(v, &mock_embedding(t, 8), "{t}");
    }
    // The dimension was learnt from the answers: no probe.
    assert_eq!(emb.dim(), 8);
    assert_eq!(srv.requests_to(EMB), 3);
    // Batch sizes seen by the server: 4, 4, 2 in some order.
    let mut sizes: Vec<usize> = srv
        .seen()
        .iter()
        .map(|s| s.body["input"].as_array().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, vec![2, 4, 4]);
    assert_eq!(srv.seen()[0].body["model"], "mock-model");
    assert!(emb.embed(&[]).unwrap().is_empty());
    assert_eq!(emb.name(), "openai:mock-model");
}

#[test]
fn dim_probes_once_and_caches() {
    let srv = MockServer::start(MockConfig {
        dim: 5,
        ..MockConfig::default()
    });
    let emb = OpenAiEmbedder::new(cfg(&srv)).unwrap();
    assert_eq!(emb.dim(), 5);
    assert_eq!(emb.dim(), 5);
    assert_eq!(srv.requests(), 1);
    assert_eq!(emb.embed(&texts(3)).unwrap()[2].len(), 5);
}

#[test]
fn embeddings_retry_and_then_reject_bad_shapes() {
    // A 500 then success.
    let srv = MockServer::start(MockConfig::failing(Fault::ServerError, 1));
    let emb = OpenAiEmbedder::new(cfg(&srv)).unwrap();
    assert_eq!(
        emb.embed(&texts(2)).unwrap()[1],
        mock_embedding("profile text 1", 8)
    );
    assert_eq!(srv.requests(), 2);

    // Always one vector short: retried, then an error naming the count.
    let srv = MockServer::start(MockConfig::failing(Fault::WrongCount, usize::MAX));
    let emb = OpenAiEmbedder::new(OpenAiConfig {
        max_retries: 1,
        ..cfg(&srv)
    })
    .unwrap();
    let msg = format!("{:#}", emb.embed(&texts(3)).unwrap_err());
    assert!(msg.contains("expected 3"), "{msg}");
    assert_eq!(srv.requests(), 2);

    // First batch 9-dimensional, the next 8: the dims differ.
    let srv = MockServer::start(MockConfig::failing(Fault::WrongDim, 1));
    let emb = OpenAiEmbedder::new(OpenAiConfig {
        batch_size: 2,
        concurrency: 1,
        ..cfg(&srv)
    })
    .unwrap();
    let msg = format!("{:#}", emb.embed(&texts(4)).unwrap_err());
    assert!(msg.contains("8-dimensional") && msg.contains("9"), "{msg}");

    // A dimension given in advance is enforced.
    let srv = MockServer::start(MockConfig::default());
    let emb = OpenAiEmbedder::new(cfg(&srv)).unwrap().with_dim(16);
    assert!(emb.embed(&texts(1)).is_err());
}

#[test]
fn failed_embedding_batch_fails_the_call_with_its_range() {
    let srv = MockServer::start(MockConfig::failing(Fault::BadRequest, usize::MAX));
    let emb = OpenAiEmbedder::new(OpenAiConfig {
        batch_size: 2,
        concurrency: 1,
        ..cfg(&srv)
    })
    .unwrap();
    let msg = format!("{:#}", emb.embed(&texts(6)).unwrap_err());
    assert!(msg.contains("texts 0..2") && msg.contains("400"), "{msg}");
    // Later batches are skipped once one has failed.
    assert_eq!(srv.requests(), 1);
    assert!(emb.try_dim().is_err());
}

#[test]
fn api_key_is_sent_as_bearer_token() {
    const VAR: &str = "DAREC_TEST_OPENAI_CLIENTS_KEY";
    std::env::set_var(VAR, "sk-test-123");
    let srv = MockServer::start(MockConfig::default());
    let chat = OpenAiChat::new(OpenAiConfig {
        api_key_env: Some(VAR.into()),
        ..cfg(&srv)
    })
    .unwrap();
    chat.complete(&req("k")).unwrap();
    let emb = OpenAiEmbedder::new(OpenAiConfig {
        api_key_env: Some(VAR.into()),
        ..cfg(&srv)
    })
    .unwrap();
    emb.embed(&texts(1)).unwrap();
    for s in srv.seen() {
        assert_eq!(
            s.authorization.as_deref(),
            Some("Bearer sk-test-123"),
            "{}",
            s.path
        );
    }
    // The key never shows in Debug output.
    assert!(!format!("{chat:?}").contains("sk-test-123"));
}
