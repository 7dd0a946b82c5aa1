//! `darec serve`: the [`Recommender`] over HTTP (axum + tokio). The model is loaded once
//! and shared by all requests (reads in parallel; adding an item takes the write lock only
//! to append). Every bad request gets a 4xx with a JSON body `{"error": "..."}`: unknown
//! ids or titles (404), a title of several items, `k` out of range, missing or malformed
//! parameters and JSON (400), bodies over 64 KiB (413), requests not complete within the
//! timeout, e.g. a client that sends its body slowly (408). SIGINT and SIGTERM stop the
//! server after the requests in flight.
//!
//! Routes: `GET /recommend?user=&k=&include_seen=`, `POST /recommend` `{"items": [..] or "text": ..,
//! "k": .., "method": "auto"|"fit"|"closed"}` (fold-in), `GET /similar?item=&k=`, `GET
//! /history?user=`, `GET /explain?user=&k=`, `POST /items` `{"text": .., "id": ..,
//! "method": "alignment"|"text-knn"}` (cold start), `GET /health`, `GET /metrics`
//! (Prometheus), `GET /openapi.json`, `GET /` (an HTML page to look users up, or
//! to fold in a new user from the items they liked).

use super::cold_start::ColdMethod;
use super::metrics::Metrics;
use super::recommender::{FoldMethod, NamedItem, Recommender, Scored, ServeError};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// A request (body included) must be complete within this time.
    pub request_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
        }
    }
}

pub struct App {
    pub rec: RwLock<Recommender>,
    pub metrics: Metrics,
    pub options: ServeOptions,
    started: Instant,
}

/// A 4xx/5xx answer with a JSON message.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<ServeError> for ApiError {
    fn from(e: ServeError) -> Self {
        match e {
            ServeError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            ServeError::BadRequest(m) => ApiError(StatusCode::BAD_REQUEST, m),
            ServeError::Internal(e) => {
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the request body is larger than {MAX_BODY} bytes")
        } else {
            format!("malformed JSON body: {}", r.body_text())
        };
        ApiError(status, msg)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("bad query: {}", r.body_text()),
        )
    }
}

type Answer<T> = Result<Json<T>, ApiError>;

fn read(app: &App) -> std::sync::RwLockReadGuard<'_, Recommender> {
    app.rec.read().unwrap_or_else(|e| e.into_inner())
}

#[derive(Deserialize)]
struct UserQuery {
    user: String,
    k: Option<usize>,
    include_seen: Option<bool>,
}

#[derive(Deserialize)]
struct ItemQuery {
    item: String,
    k: Option<usize>,
}

/// A new user: the items they liked (fold-in), or a text about them (cold start).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    #[serde(default)]
    items: Vec<String>,
    text: Option<String>,
    k: Option<usize>,
    /// `auto`, `fit`, `closed` for items; `alignment`, `text-knn` for a text.
    method: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewItem {
    text: String,
    id: Option<String>,
    method: Option<ColdMethod>,
}

#[derive(Serialize)]
pub struct Ranked {
    pub user: Option<String>,
    /// For a new user folded in from their items: those items as understood (id, title).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liked: Option<Vec<NamedItem>>,
    /// For a new user from liked items: entries that named an item named before, dropped
    /// (the liked items are a set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates_dropped: Option<usize>,
    pub items: Vec<Scored>,
}

const DEFAULT_K: usize = 20;

async fn recommend_get(
    State(app): State<Arc<App>>,
    q: Result<Query<UserQuery>, QueryRejection>,
) -> Answer<Ranked> {
    let Query(q) = q?;
    let items = read(&app).recommend(
        &q.user,
        q.k.unwrap_or(DEFAULT_K),
        q.include_seen.unwrap_or(false),
    )?;
    Ok(Json(Ranked {
        user: Some(q.user),
        liked: None,
        duplicates_dropped: None,
        items,
    }))
}

fn parse_method<T: clap::ValueEnum>(m: &Option<String>) -> Result<Option<T>, ApiError> {
    m.as_deref()
        .map(|s| {
            T::from_str(s, false).map_err(|_| {
                let known: Vec<String> = T::value_variants()
                    .iter()
                    .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
                    .collect();
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("unknown method `{s}` (one of {})", known.join(", ")),
                )
            })
        })
        .transpose()
}

async fn recommend_post(
    State(app): State<Arc<App>>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Answer<Ranked> {
    let Json(b) = body?;
    let k = b.k.unwrap_or(DEFAULT_K);
    match (&b.text, b.items.is_empty()) {
        (Some(_), false) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            "give either `items` (fold-in) or `text` (cold start), not both".into(),
        )),
        (Some(text), true) => {
            let method = parse_method::<ColdMethod>(&b.method)?;
            let (text, app2) = (text.clone(), app.clone());
            let (items, _) = tokio::task::spawn_blocking(move || {
                read(&app2).recommend_for_text(&text, k, method)
            })
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
            Ok(Json(Ranked {
                user: None,
                liked: None,
                duplicates_dropped: None,
                items,
            }))
        }
        (None, _) => {
            let method = parse_method::<FoldMethod>(&b.method)?.unwrap_or(FoldMethod::Auto);
            let rec = read(&app);
            let f = rec.recommend_for_named_items(&b.items, k, method)?;
            Ok(Json(Ranked {
                user: None,
                liked: Some(f.liked),
                duplicates_dropped: Some(f.duplicates),
                items: f.items,
            }))
        }
    }
}

#[derive(Serialize)]
pub struct Similar {
    pub item: String,
    pub items: Vec<Scored>,
}

async fn similar(
    State(app): State<Arc<App>>,
    q: Result<Query<ItemQuery>, QueryRejection>,
) -> Answer<Similar> {
    let Query(q) = q?;
    let rec = read(&app);
    let items = rec.similar(&q.item, q.k.unwrap_or(DEFAULT_K))?;
    // typed, so scores are written as f32 exactly as `darec similar --json` writes them;
    // `item` is the id of the item asked for, also when it was named by its title
    Ok(Json(Similar {
        item: rec.find_item(&q.item)?.id,
        items,
    }))
}

async fn history(
    State(app): State<Arc<App>>,
    q: Result<Query<UserQuery>, QueryRejection>,
) -> Answer<Ranked> {
    let Query(q) = q?;
    let items = read(&app).history(&q.user)?;
    Ok(Json(Ranked {
        user: Some(q.user),
        liked: None,
        duplicates_dropped: None,
        items,
    }))
}

async fn explain(
    State(app): State<Arc<App>>,
    q: Result<Query<UserQuery>, QueryRejection>,
) -> Answer<super::explain::Explained> {
    let Query(q) = q?;
    let k = q.k.unwrap_or(10);
    let app2 = app.clone();
    let out =
        tokio::task::spawn_blocking(move || super::explain::explain(&read(&app2), &q.user, k, 3))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(out))
}

async fn add_item(
    State(app): State<Arc<App>>,
    body: Result<Json<NewItem>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(b) = body?;
    let app2 = app.clone();
    // embedding the text is the slow part: done under the read lock, off the async workers
    let prepared = tokio::task::spawn_blocking(move || {
        read(&app2).prepare_item(b.id.as_deref(), &b.text, b.method)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let (id, method) = app
        .rec
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .commit_item(prepared)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": id, "method": method.as_str() })),
    ))
}

async fn health(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    let r = read(&app);
    Json(serde_json::json!({
        "status": "ok",
        "model": r.label,
        "users": r.n_users(),
        "items": r.n_items(),
        "added_items": r.n_added(),
        "uptime_s": app.started.elapsed().as_secs_f64(),
    }))
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let (users, items) = {
        let r = read(&app);
        (r.n_users() as f64, r.n_items() as f64)
    };
    let text = app.metrics.render(&[
        ("darec_users", "Users in the served model.", users),
        (
            "darec_items",
            "Items in the served model, added ones included.",
            items,
        ),
        (
            "darec_uptime_seconds",
            "Seconds since the server started.",
            app.started.elapsed().as_secs_f64(),
        ),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

async fn index() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such route: see GET /openapi.json".into(),
    )
}

/// Times every request (metrics) and answers 408 when it is not complete in time.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let t0 = Instant::now();
    let resp = match tokio::time::timeout(app.options.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request was not complete within {} s",
                app.options.request_timeout.as_secs_f64()
            ),
        )
        .into_response(),
    };
    app.metrics
        .observe(&route, resp.status().as_u16(), t0.elapsed().as_secs_f64());
    resp
}

/// The application: routes, limits, metrics and timeouts around `rec`.
pub fn router(rec: Recommender, options: ServeOptions) -> (Router, Arc<App>) {
    let app = Arc::new(App {
        rec: RwLock::new(rec),
        metrics: Metrics::default(),
        options,
        started: Instant::now(),
    });
    let router = Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/recommend", get(recommend_get).post(recommend_post))
        .route("/similar", get(similar))
        .route("/history", get(history))
        .route("/explain", get(explain))
        .route("/items", post(add_item))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), observe))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app.clone());
    (router, app)
}

/// A future that resolves when SIGINT or SIGTERM arrives. The handlers are installed
/// here, at once (call it inside the runtime before announcing the server), so a signal
/// that comes right after start-up stops the server cleanly instead of killing it.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::info!("shutting down after the requests in flight");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Serves `rec` on `listener` until `shutdown` resolves.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    rec: Recommender,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (router, _) = router(rec, options);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
