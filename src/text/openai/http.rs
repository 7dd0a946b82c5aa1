//! One JSON POST with the retry policy shared by the chat and embeddings clients:
//! retry 429, 5xx, timeouts, connection errors and malformed answers (bounded by
//! `max_retries`) with exponential backoff and jitter, honouring `Retry-After` (capped at
//! `backoff_max_ms`); fail at once on other statuses with the server's own error text.

use super::config::OpenAiConfig;
use super::limiter::RateLimiter;
use crate::rng::Rng;
use anyhow::{anyhow, bail};
use std::sync::Mutex;
use std::time::Duration;

/// Largest response body read (embeddings of a big batch can be tens of MB of JSON).
const MAX_BODY_BYTES: u64 = 512 << 20;
/// How much of a server's error body goes into an error message.
const MAX_ERROR_TEXT: usize = 600;

/// Delay before retry number `attempt + 1` (`attempt` = 0 after the first failure):
/// `base = min(max, initial * 2^attempt)`, then "equal jitter" `base/2 + u * base/2` with
/// `u` in `[0, 1)`, so delays grow but concurrent clients do not retry in lockstep.
pub fn backoff_delay(attempt: usize, initial_ms: u64, max_ms: u64, u: f64) -> Duration {
    let factor = 2f64.powi(attempt.min(62) as i32);
    let base = (initial_ms as f64 * factor).min(max_ms as f64);
    let u = if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Duration::from_secs_f64((base / 2.0 + u * base / 2.0) / 1000.0)
}

/// A `Retry-After` header in its delay-seconds form (`"2"`, `"0.5"`); HTTP dates and
/// garbage give `None` (the normal backoff applies then).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// The readable part of an error body: `error.message`, `error` as text, `message`, or
/// the raw body, shortened.
pub(crate) fn server_error_text(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = &v["error"];
            e["message"]
                .as_str()
                .or_else(|| e.as_str())
                .or_else(|| v["message"].as_str())
                .or_else(|| v["detail"].as_str())
                .map(str::to_string)
        });
    let text = from_json.unwrap_or_else(|| body.trim().to_string());
    if text.is_empty() {
        return "(empty body)".into();
    }
    shorten(&text, MAX_ERROR_TEXT)
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// What one attempt came to, when it did not succeed.
enum Failure {
    /// Worth another try (after `retry_after` if the server said so).
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Another try would fail the same way.
    Fatal(anyhow::Error),
}

/// Transport errors worth retrying: the server may be restarting or overloaded.
fn transport_is_retryable(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
    )
}

/// A blocking JSON client with retries, shared by all worker threads of one model.
pub(crate) struct JsonClient {
    agent: ureq::Agent,
    authorization: Option<String>,
    limiter: Option<RateLimiter>,
    jitter: Mutex<Rng>,
    max_retries: usize,
    backoff_initial_ms: u64,
    backoff_max_ms: u64,
}

impl std::fmt::Debug for JsonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("JsonClient")
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "Bearer ***"),
            )
            .field("limiter", &self.limiter)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl JsonClient {
    /// A client for `cfg` (validated here); reads the API key from the environment.
    pub(crate) fn new(cfg: &OpenAiConfig) -> anyhow::Result<Self> {
        cfg.validate()?;
        let authorization = cfg.api_key()?.map(|k| format!("Bearer {k}"));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs_f64(cfg.timeout_s)))
            .max_idle_connections_per_host(cfg.concurrency.max(3))
            .max_idle_connections(cfg.concurrency.max(10))
            .user_agent(concat!("darec/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        Ok(Self {
            agent,
            authorization,
            limiter: cfg.requests_per_minute.map(RateLimiter::per_minute),
            jitter: Mutex::new(Rng::new(seed ^ std::process::id() as u64)),
            max_retries: cfg.max_retries,
            backoff_initial_ms: cfg.backoff_initial_ms,
            backoff_max_ms: cfg.backoff_max_ms,
        })
    }

    /// POSTs `body` to `url` and turns a 2xx answer into `T` with `parse` (whose `Err` is
    /// a malformed answer, retried). Gives up after `max_retries` retries with an error
    /// naming the URL, the number of attempts and the last failure.
    pub(crate) fn post<T>(
        &self,
        url: &str,
        body: &serde_json::Value,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> anyhow::Result<T> {
        let attempts = self.max_retries + 1;
        let mut last = String::new();
        for attempt in 0..attempts {
            match self.attempt(url, body, &parse) {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry {
                    reason,
                    retry_after,
                }) => {
                    last = reason;
                    if attempt + 1 < attempts {
                        let cap = Duration::from_millis(self.backoff_max_ms);
                        let delay = match retry_after {
                            Some(d) => d.min(cap),
                            None => {
                                let u = self.jitter.lock().unwrap_or_else(|e| e.into_inner()).f64();
                                backoff_delay(
                                    attempt,
                                    self.backoff_initial_ms,
                                    self.backoff_max_ms,
                                    u,
                                )
                            }
                        };
                        tracing::warn!(
                            "POST {url}: {last}; retry {}/{} in {:.2} s",
                            attempt + 1,
                            self.max_retries,
                            delay.as_secs_f64()
                        );
                        std::thread::sleep(delay);
                    }
                }
            }
        }
        bail!("POST {url} failed after {attempts} attempt(s); last error: {last}")
    }

    fn attempt<T>(
        &self,
        url: &str,
        body: &serde_json::Value,
        parse: &impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, Failure> {
        if let Some(l) = &self.limiter {
            l.acquire();
        }
        let mut req = self.agent.post(url);
        if let Some(auth) = &self.authorization {
            req = req.header("Authorization", auth);
        }
        let mut resp = match req.send_json(body) {
            Ok(r) => r,
            Err(e) if transport_is_retryable(&e) => {
                return Err(Failure::Retry {
                    reason: format!("request failed ({e})"),
                    retry_after: None,
                })
            }
            Err(e) => return Err(Failure::Fatal(anyhow!("POST {url}: {e}"))),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = match resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
        {
            Ok(t) => t,
            Err(e) if transport_is_retryable(&e) => {
                return Err(Failure::Retry {
                    reason: format!("HTTP {status}, reading the body failed ({e})"),
                    retry_after: None,
                })
            }
            Err(e) => {
                return Err(Failure::Fatal(anyhow!(
                    "POST {url}: HTTP {status}, unreadable body: {e}"
                )))
            }
        };
        match status {
            200..=299 => parse(&text).map_err(|why| Failure::Retry {
                reason: format!("malformed answer (HTTP {status}): {why}"),
                retry_after: None,
            }),
            429 | 500..=599 => Err(Failure::Retry {
                reason: format!("HTTP {status}: {}", server_error_text(&text)),
                retry_after,
            }),
            _ => Err(Failure::Fatal(anyhow!(
                "POST {url}: HTTP {status} (not retried): {}",
                server_error_text(&text)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    #[test]
    fn backoff_doubles_then_caps_with_equal_jitter() {
        // u = 0: half the base; u = 1: the full base.
        assert!((ms(backoff_delay(0, 500, 30_000, 0.0)) - 250.0).abs() < 1e-6);
        assert!((ms(backoff_delay(0, 500, 30_000, 1.0)) - 500.0).abs() < 1e-6);
        assert!((ms(backoff_delay(1, 500, 30_000, 0.5)) - 750.0).abs() < 1e-6);
        assert!((ms(backoff_delay(3, 500, 30_000, 1.0)) - 4000.0).abs() < 1e-6);
        // 500 * 2^6 = 32000 > 30000: capped.
        assert!((ms(backoff_delay(6, 500, 30_000, 1.0)) - 30_000.0).abs() < 1e-6);
        assert!((ms(backoff_delay(1000, 500, 30_000, 0.0)) - 15_000.0).abs() < 1e-6);
        assert_eq!(backoff_delay(2, 0, 0, 0.7), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds_only() {
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("NaN"), None);
    }

    #[test]
    fn server_error_text_prefers_the_message() {
        assert_eq!(
            server_error_text(r#"{"error":{"message":"bad model","type":"x"}}"#),
            "bad model"
        );
        assert_eq!(server_error_text(r#"{"error":"nope"}"#), "nope");
        assert_eq!(server_error_text(r#"{"detail":"missing"}"#), "missing");
        assert_eq!(server_error_text("plain text\n"), "plain text");
        assert_eq!(server_error_text(""), "(empty body)");
        let long = "é".repeat(1000);
        let s = server_error_text(&long);
        assert!(s.ends_with("...") && s.len() <= MAX_ERROR_TEXT + 3);
    }
}
