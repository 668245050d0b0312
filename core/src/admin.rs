//! The admin page: one handler, [`crate::KeyLeash::admin`], that every mount (the
//! Express `adminRouter`, the FastAPI `admin_router`) calls with the request it
//! got and whose answer it sends as is. The page's HTML, CSS and JS are embedded
//! here (`core/admin/`) and served byte for byte; its JSON API reads and revokes
//! through the same public methods as everything else.
//!
//! A mount decides who may see the page (its `authorize`) before calling this,
//! and reads at most [`ADMIN_MAX_BODY_BYTES`] of a body; what it answers then
//! is written here too ([`AdminResponse::unauthorized`],
//! [`AdminResponse::payload_too_large`]), so both mounts send the same bytes.
//! What this handler guarantees on its own:
//!
//! - no raw key and no key hash in any answer (the API serves [`crate::KeyDetails`]);
//! - every state-changing request (`POST api/revoke`) carries the CSRF token of
//!   `GET api/session` in `X-Keyleash-Csrf`, equal to the `keyleash_admin_csrf`
//!   cookie (double submit; the cookie is `HttpOnly` and `SameSite=Strict`), has a
//!   JSON body, and comes from the same origin when the browser says where it
//!   comes from (`Sec-Fetch-Site`, `Origin`); anything else is 403 `csrf`;
//! - a Content-Security-Policy that allows only the page's own files, no framing,
//!   and `Cache-Control: no-store` on every answer.

use serde::Deserialize;
use serde_json::json;

use crate::client::KeyLeash;
use crate::error::Error;
use crate::model::{DaySpend, SpendOf};

const INDEX_HTML: &str = include_str!("../admin/index.html");
const ADMIN_CSS: &str = include_str!("../admin/admin.css");
const ADMIN_JS: &str = include_str!("../admin/admin.js");

/// The cookie holding the CSRF token.
const CSRF_COOKIE: &str = "keyleash_admin_csrf";
/// The largest request body the admin page accepts, in bytes (16 KiB; a revoke
/// is a few bytes). A mount stops reading a body there and answers
/// [`AdminResponse::payload_too_large`]; the handler refuses a longer one too.
pub const ADMIN_MAX_BODY_BYTES: usize = 16 * 1024;
/// The message of a 413 `payload_too_large`.
const TOO_LARGE: &str = "the body is too large";
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// One HTTP request to the admin page, as a mount hands it over.
#[derive(Clone, Debug, Default)]
pub struct AdminRequest {
    /// `GET`, `POST`, … (any case).
    pub method: String,
    /// The path below the mount point: `""`, `/`, `/admin.js`, `/api/accounts`, …
    pub path: String,
    /// The raw query string, without `?` (`q=acme&limit=10`).
    pub query: String,
    /// The mount point as the browser sees it (`/admin`), for the redirect from
    /// `/admin` to `/admin/` and the cookie's path.
    pub base: String,
    /// The request's headers; names in any case.
    pub headers: Vec<(String, String)>,
    /// The request's body (only `POST api/revoke` reads one).
    pub body: Vec<u8>,
}

/// The answer to send: status, headers and body, as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminResponse {
    /// The HTTP status.
    pub status: u16,
    /// The headers (`Content-Type` first in the handler's own answers).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl AdminRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of the query parameter `name`, percent-decoded.
    fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k) == name).then(|| decode(v))
        })
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.header("cookie")?.split(';').find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
    }
}

impl AdminResponse {
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![
                ("Content-Type".into(), content_type.into()),
                ("Cache-Control".into(), "no-store".into()),
                ("X-Content-Type-Options".into(), "nosniff".into()),
                ("Referrer-Policy".into(), "same-origin".into()),
                ("X-Frame-Options".into(), "DENY".into()),
                ("Content-Security-Policy".into(), CSP.into()),
            ],
            body,
        }
    }

    fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(
            status,
            "application/json",
            serde_json::to_vec(value).unwrap_or_default(),
        )
    }

    /// `{"error": {"code", "message"}}` with `status`.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            &json!({"error": {"code": code, "message": message}}),
        )
    }

    /// What a mount answers when its `authorize` refuses a request (or it has
    /// none), before the handler sees it: 401 `{"error": {"code": "unauthorized",
    /// "message"}}` with `WWW-Authenticate: Basic realm="keyleash admin",
    /// charset="UTF-8"` (so a browser asks for a user and password) and
    /// `Cache-Control: no-store`, then `Content-Type: application/json`. Only these
    /// headers: nothing of the page is served.
    pub fn unauthorized() -> Self {
        Self::gate(
            401,
            vec![
                (
                    "WWW-Authenticate".into(),
                    r#"Basic realm="keyleash admin", charset="UTF-8""#.into(),
                ),
                ("Cache-Control".into(), "no-store".into()),
            ],
            "unauthorized",
            "the admin page needs authorization",
        )
    }

    /// What a mount answers to a body over [`ADMIN_MAX_BODY_BYTES`], which it
    /// stops reading there: 413 `{"error": {"code": "payload_too_large",
    /// "message"}}` with only `Content-Type: application/json`.
    pub fn payload_too_large() -> Self {
        Self::gate(413, Vec::new(), "payload_too_large", TOO_LARGE)
    }

    /// A mount's own answer: `headers`, then `Content-Type: application/json`, and
    /// the error body (none of the security headers of [`AdminResponse::new`]: the
    /// mounts have always sent these answers so).
    fn gate(status: u16, mut headers: Vec<(String, String)>, code: &str, message: &str) -> Self {
        headers.push(("Content-Type".into(), "application/json".into()));
        let body = json!({"error": {"code": code, "message": message}});
        Self {
            status,
            headers,
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }

    fn with_header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.into(), value));
        self
    }
}

impl From<Error> for AdminResponse {
    fn from(e: Error) -> Self {
        let status = match e.code() {
            "unavailable" | "not_migrated" => 503,
            _ => 400,
        };
        AdminResponse::error(status, e.code(), &e.to_string())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    id: i64,
}

impl KeyLeash {
    /// Answers one request to the admin page (see the module [`crate::admin`]):
    ///
    /// - `GET /` the page, `GET /admin.css`, `GET /admin.js` its files; `GET` of
    ///   the mount point itself (empty path) redirects to it with a slash;
    /// - `GET /api/session`: `{"csrf"}` and the cookie that goes with it;
    /// - `GET /api/accounts?q=&limit=`: [`KeyLeash::accounts`] (default limit 50);
    /// - `GET /api/spend?key=ID|account=ID&days=`: [`KeyLeash::spend_per_day`]
    ///   (default 30 days) as `{"days": [{"day", "cents"}], "totalCents"}`;
    /// - `POST /api/revoke` with `{"id"}`: [`KeyLeash::revoke`], `{"revoked": true}`
    ///   or 404 `not_found` when no live key has that id.
    ///
    /// Errors are JSON, `{"error": {"code", "message"}}`: 400 for bad parameters
    /// (the core's `invalid_*` codes), 403 `csrf`, 404 `not_found`, 405
    /// `method_not_allowed`, 413 `payload_too_large`, 503 `unavailable` /
    /// `not_migrated`. Never fails: every outcome is an answer to send.
    pub async fn admin(&self, req: AdminRequest) -> AdminResponse {
        match self.admin_route(&req).await {
            Ok(r) | Err(r) => r,
        }
    }

    async fn admin_route(&self, req: &AdminRequest) -> Result<AdminResponse, AdminResponse> {
        let method = req.method.to_ascii_uppercase();
        let get = method == "GET";
        let asset =
            |ct: &str, body: &str| Ok(AdminResponse::new(200, ct, body.as_bytes().to_vec()));
        match (req.path.as_str(), get) {
            ("", true) => Ok(
                AdminResponse::new(308, "text/plain; charset=utf-8", Vec::new())
                    .with_header("Location", format!("{}/", req.base.trim_end_matches('/'))),
            ),
            ("/" | "/index.html", true) => asset("text/html; charset=utf-8", INDEX_HTML),
            ("/admin.css", true) => asset("text/css; charset=utf-8", ADMIN_CSS),
            ("/admin.js", true) => asset("text/javascript; charset=utf-8", ADMIN_JS),
            ("/api/session", true) => Ok(session(req)),
            ("/api/accounts", true) => {
                let limit = number(req, "limit", 50)?;
                let q = req.param("q").unwrap_or_default();
                let page = self.accounts(q.trim(), limit).await?;
                Ok(AdminResponse::json(200, &json!(page)))
            }
            ("/api/spend", true) => self.admin_spend(req).await,
            ("/api/revoke", false) if method == "POST" => self.admin_revoke(req).await,
            (
                "" | "/" | "/index.html" | "/admin.css" | "/admin.js" | "/api/session"
                | "/api/accounts" | "/api/spend",
                false,
            )
            | ("/api/revoke", _) => Err(AdminResponse::error(
                405,
                "method_not_allowed",
                &format!("{method} is not allowed here"),
            )
            .with_header(
                "Allow",
                if req.path == "/api/revoke" {
                    "POST"
                } else {
                    "GET"
                }
                .into(),
            )),
            _ => Err(AdminResponse::error(404, "not_found", "no such admin page")),
        }
    }

    async fn admin_spend(&self, req: &AdminRequest) -> Result<AdminResponse, AdminResponse> {
        let days = number(req, "days", 30)?;
        let account = req.param("account");
        let of = match (req.param("key"), &account) {
            (Some(k), None) => SpendOf::Key(k.parse().map_err(|_| {
                AdminResponse::error(400, "invalid_argument", "key must be a key id")
            })?),
            (None, Some(a)) => SpendOf::Account(a),
            _ => {
                return Err(AdminResponse::error(
                    400,
                    "invalid_argument",
                    "give one of key or account",
                ))
            }
        };
        let micros = self.micros_per_day(of, days).await?;
        // Summed in micro-cents, as the ledger holds them, so the total is exact;
        // saturated at the `i64` range, as the counters and each day's sum are.
        let total = crate::amount::micros_to_cents(
            micros
                .iter()
                .fold(0i64, |sum, (_, m)| sum.saturating_add(*m)),
        );
        let days: Vec<DaySpend> = micros
            .into_iter()
            .map(|(day, m)| DaySpend {
                day,
                cents: crate::amount::micros_to_cents(m),
            })
            .collect();
        Ok(AdminResponse::json(
            200,
            &json!({"days": days, "totalCents": total}),
        ))
    }

    async fn admin_revoke(&self, req: &AdminRequest) -> Result<AdminResponse, AdminResponse> {
        check_csrf(req)?;
        if req.body.len() > ADMIN_MAX_BODY_BYTES {
            return Err(AdminResponse::error(413, "payload_too_large", TOO_LARGE));
        }
        let body: RevokeBody = serde_json::from_slice(&req.body).map_err(|_| {
            AdminResponse::error(
                400,
                "invalid_argument",
                "the body must be {\"id\": <key id>}",
            )
        })?;
        if self.revoke(body.id, None).await? {
            Ok(AdminResponse::json(200, &json!({"revoked": true})))
        } else {
            Err(AdminResponse::error(
                404,
                "not_found",
                &format!("no live key has id {}", body.id),
            ))
        }
    }
}

/// `GET api/session`: the token in the cookie the browser already has, or a new
/// one, with the cookie that carries it.
fn session(req: &AdminRequest) -> AdminResponse {
    let token = match req.cookie(CSRF_COOKIE).filter(|t| well_formed(t)) {
        Some(t) => t.to_string(),
        None => match new_token() {
            Some(t) => t,
            None => return AdminResponse::error(503, "unavailable", "no randomness"),
        },
    };
    let path = format!("{}/", req.base.trim_end_matches('/'));
    AdminResponse::json(200, &json!({"csrf": token})).with_header(
        "Set-Cookie",
        format!("{CSRF_COOKIE}={token}; Path={path}; HttpOnly; SameSite=Strict"),
    )
}

/// The double-submit check of a state-changing request, and where it comes from.
fn check_csrf(req: &AdminRequest) -> Result<(), AdminResponse> {
    let refuse = |why: &str| Err(AdminResponse::error(403, "csrf", why));
    if let Some(site) = req.header("sec-fetch-site") {
        if site != "same-origin" {
            return refuse("cross-site request refused");
        }
    }
    if let (Some(origin), Some(host)) = (req.header("origin"), req.header("host")) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin_host != host {
            return refuse("cross-origin request refused");
        }
    }
    let json = req
        .header("content-type")
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    if !json {
        return refuse("the body must be application/json");
    }
    let sent = req.header("x-keyleash-csrf").unwrap_or("");
    let kept = req.cookie(CSRF_COOKIE).unwrap_or("");
    if !well_formed(sent) || !constant_time_eq(sent.as_bytes(), kept.as_bytes()) {
        return refuse("missing or wrong X-Keyleash-Csrf token (reload the page)");
    }
    Ok(())
}

fn new_token() -> Option<String> {
    let mut buf = [0u8; 16];
    getrandom::getrandom(&mut buf).ok()?;
    Some(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn well_formed(token: &str) -> bool {
    token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The whole-number query parameter `name`, or `default` when absent.
fn number(req: &AdminRequest, name: &str, default: u32) -> Result<u32, AdminResponse> {
    match req.param(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            AdminResponse::error(
                400,
                "invalid_argument",
                &format!("{name} must be a whole number"),
            )
        }),
    }
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space); a broken
/// escape stays as written.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |i: usize| bytes.get(i).and_then(|b| char::from(*b).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 2;
            }
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::AdminResponse;

    fn pairs(r: &AdminResponse) -> Vec<(&str, &str)> {
        r.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    // Pins the mounts' 401 byte for byte: status, headers in order, body.
    #[test]
    fn unauthorized_answer() {
        let r = AdminResponse::unauthorized();
        assert_eq!(r.status, 401);
        assert_eq!(
            pairs(&r),
            [
                (
                    "WWW-Authenticate",
                    r#"Basic realm="keyleash admin", charset="UTF-8""#
                ),
                ("Cache-Control", "no-store"),
                ("Content-Type", "application/json"),
            ]
        );
        assert_eq!(
            r.body,
            br#"{"error":{"code":"unauthorized","message":"the admin page needs authorization"}}"#
        );
    }

    // Pins the mounts' 413 byte for byte, and the limit it answers.
    #[test]
    fn payload_too_large_answer() {
        assert_eq!(super::ADMIN_MAX_BODY_BYTES, 16_384);
        let r = AdminResponse::payload_too_large();
        assert_eq!(r.status, 413);
        assert_eq!(pairs(&r), [("Content-Type", "application/json")]);
        assert_eq!(
            r.body,
            br#"{"error":{"code":"payload_too_large","message":"the body is too large"}}"#
        );
    }
}
