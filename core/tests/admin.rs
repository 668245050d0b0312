//! The admin page's handler (`KeyLeash::admin`) on both stores: the embedded files
//! byte for byte, the JSON API's numbers against the database, and the CSRF rules
//! of the revoke, with the database checked after each refusal.

mod common;

use chrono::Duration;
use common::{budget, opts, Db, Kind};
use keyleash::{AdminRequest, AdminResponse, Reserve};
use serde_json::{json, Value};

fn get(path: &str, query: &str) -> AdminRequest {
    AdminRequest {
        method: "GET".into(),
        path: path.into(),
        query: query.into(),
        base: "/admin".into(),
        ..AdminRequest::default()
    }
}

fn header<'a>(r: &'a AdminResponse, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn body(r: &AdminResponse) -> Value {
    serde_json::from_slice(&r.body).expect("a JSON body")
}

async fn api(db: &Db, path: &str, query: &str) -> Value {
    let r = db.kl.admin(get(path, query)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    body(&r)
}

fn cents(db_micros: Option<i64>) -> f64 {
    db_micros.expect("a value") as f64 / 1e6
}

// The page and its files are the embedded ones, byte for byte, with the headers
// that keep them on their own origin; the mount point redirects to its slash.
async fn serves_the_page(kind: Kind) {
    let db = Db::open(kind).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/admin/");
    for (path, file, ct) in [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/admin.css", "admin.css", "text/css; charset=utf-8"),
        ("/admin.js", "admin.js", "text/javascript; charset=utf-8"),
    ] {
        let r = db.kl.admin(get(path, "")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, std::fs::read(format!("{dir}{file}")).unwrap());
        assert_eq!(header(&r, "content-type"), Some(ct));
        assert!(header(&r, "content-security-policy").is_some_and(|c| c
            .contains("script-src 'self'")
            && c.contains("frame-ancestors 'none'")));
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
    }
    let r = db.kl.admin(get("", "")).await;
    assert_eq!(r.status, 308);
    assert_eq!(header(&r, "location"), Some("/admin/"));
    let r = db.kl.admin(get("/nope", "")).await;
    assert_eq!(
        (r.status, body(&r)["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let mut post = get("/api/accounts", "");
    post.method = "POST".into();
    let r = db.kl.admin(post).await;
    assert_eq!(r.status, 405);
    assert_eq!(header(&r, "allow"), Some("GET"));
}
both!(serves_the_page);

// api/accounts: each account's ceiling and keys with the numbers the database
// holds (used, held, remaining, status); search by account and by key prefix;
// no raw key or hash anywhere. api/spend: per UTC day, zero-filled.
async fn accounts_and_spend(kind: Kind) {
    let db = Db::open(kind).await;
    let k1 = db
        .kl
        .create(budget("acme", 500.0, Some("month")))
        .await
        .unwrap();
    let k2 = db.kl.create(opts("acme")).await.unwrap();
    let k3 = db.kl.create(budget("globex", 100.0, None)).await.unwrap();
    db.kl
        .set_account_budget("acme", Some(1000.0), Some("month"))
        .await
        .unwrap();
    db.charge(&k1.key, 120.5).await;
    db.clock().advance(Duration::days(1));
    db.charge(&k1.key, 10.0).await;
    db.charge(&k2.key, 5.0).await;
    db.charge(&k3.key, 100.0).await;
    let hold = db.kl.reserve(&k1.key, Reserve::cents(30.0)).await.unwrap();
    assert!(hold.success());

    let page = api(&db, "/api/accounts", "").await;
    assert_eq!(page["truncated"], false);
    let accounts = page["accounts"].as_array().unwrap();
    let ids: Vec<&str> = accounts
        .iter()
        .map(|a| a["accountId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "globex"]);
    let acme = &accounts[0];
    let ceiling = &acme["ceiling"];
    let ceiling_used = db
        .scalar("SELECT budget_used_micros FROM {accounts} WHERE account_id = 'acme'")
        .await;
    assert_eq!(
        ceiling["budgetUsedCents"].as_f64(),
        Some(cents(ceiling_used))
    );
    assert_eq!(ceiling["budgetUsedCents"], 135.5);
    assert_eq!(ceiling["budgetHeldCents"], 30.0);
    assert_eq!(ceiling["budgetRemainingCents"], 1000.0 - 135.5 - 30.0);
    assert_eq!(ceiling["budgetPeriod"], "month");
    let keys = acme["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let first = &keys[0];
    assert_eq!(first["id"], k1.id);
    assert_eq!(
        first["budgetUsedCents"].as_f64(),
        Some(cents(Some(db.used_micros(k1.id).await)))
    );
    assert_eq!(first["budgetUsedCents"], 130.5);
    assert_eq!(first["budgetHeldCents"], 30.0);
    assert_eq!(first["budgetRemainingCents"], 500.0 - 130.5 - 30.0);
    assert_eq!(first["status"], "active");
    assert_eq!(keys[1]["budgetCents"], Value::Null);
    let globex = &accounts[1];
    assert_eq!(globex["ceiling"], Value::Null);
    assert_eq!(globex["keys"][0]["status"], "budget_exceeded");

    // Nothing secret in the answer.
    let text = String::from_utf8(db.kl.admin(get("/api/accounts", "")).await.body).unwrap();
    for k in [&k1, &k2, &k3] {
        assert!(!text.contains(&k.key));
        let hash = db
            .text(&format!(
                "SELECT key_hash FROM {{keys}} WHERE id = {}",
                k.id
            ))
            .await
            .expect("a hash");
        assert!(!text.contains(&hash));
    }

    // Search: an account's prefix, a key's display prefix, nothing, a limit.
    let only = |v: &Value| -> Vec<String> {
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["accountId"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(only(&api(&db, "/api/accounts", "q=glo").await), ["globex"]);
    assert!(
        only(&api(&db, "/api/accounts", "q=GLO").await).is_empty(),
        "case-sensitive"
    );
    let prefix = first["keyPrefix"].as_str().unwrap().to_string();
    let q = format!("q={}", prefix.replace('_', "%5F"));
    assert_eq!(only(&api(&db, "/api/accounts", &q).await), ["acme"]);
    assert!(only(&api(&db, "/api/accounts", "q=zzz").await).is_empty());
    let one = api(&db, "/api/accounts", "limit=1").await;
    assert_eq!(
        (only(&one), one["truncated"].clone()),
        (vec!["acme".to_string()], json!(true))
    );
    let r = db.kl.admin(get("/api/accounts", "limit=0")).await;
    assert_eq!(
        (r.status, body(&r)["error"]["code"].clone()),
        (400, json!("invalid_argument"))
    );

    // Spend per day: three days ending today (the manual clock's), zero-filled.
    let spend = api(&db, "/api/spend", &format!("key={}&days=3", k1.id)).await;
    assert_eq!(
        spend["days"],
        json!([
            {"day": "2026-01-14", "cents": 0.0},
            {"day": "2026-01-15", "cents": 120.5},
            {"day": "2026-01-16", "cents": 10.0},
        ])
    );
    assert_eq!(spend["totalCents"], 130.5);
    let (sum, _) = db.ledger(k1.id).await;
    assert_eq!(spend["totalCents"].as_f64(), Some(cents(Some(sum))));
    let spend = api(&db, "/api/spend", "account=acme&days=2").await;
    assert_eq!(spend["days"][0]["cents"], 120.5);
    assert_eq!(spend["days"][1]["cents"], 15.0);
    assert_eq!(
        api(&db, "/api/spend", "account=acme").await["days"]
            .as_array()
            .unwrap()
            .len(),
        30
    );
    for bad in [
        "days=3",
        "key=x&days=3",
        "key=1&account=acme",
        "key=1&days=0",
        "key=1&days=367",
    ] {
        let r = db.kl.admin(get("/api/spend", bad)).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(body(&r)["error"]["code"], "invalid_argument", "{bad}");
    }
}
both!(accounts_and_spend);

// Pins api/spend past the counters' range: ledger rows near i64::MAX micro-cents
// sum to i64::MAX (saturated, as the counters are) instead of a 503, per day and
// in the total, for a key and for its account; a total whose days each fit but
// together pass the range saturates too.
async fn spend_saturates_past_the_range(kind: Kind) {
    let db = Db::open(kind).await;
    let twice = db.kl.create(opts("acme")).await.unwrap();
    let daily = db.kl.create(opts("acme")).await.unwrap();
    db.charge(&twice.key, 1.0).await;
    db.charge(&twice.key, 2.0).await;
    db.charge(&daily.key, 3.0).await;
    db.clock().advance(Duration::days(1));
    db.charge(&daily.key, 4.0).await;
    let near = i64::MAX - 10;
    db.exec(&format!(
        "UPDATE {{ledger}} SET amount_micros = {near} WHERE key_id IN ({}, {})",
        twice.id, daily.id
    ))
    .await;
    let max = keyleash::amount::micros_to_cents(i64::MAX);
    let spend = api(&db, "/api/spend", &format!("key={}&days=2", twice.id)).await;
    assert_eq!(spend["days"][0]["cents"].as_f64(), Some(max));
    assert_eq!(spend["days"][1]["cents"].as_f64(), Some(0.0));
    assert_eq!(spend["totalCents"].as_f64(), Some(max));
    // Each day fits; the two together do not.
    let spend = api(&db, "/api/spend", &format!("key={}&days=2", daily.id)).await;
    let one = keyleash::amount::micros_to_cents(near);
    assert_eq!(spend["days"][0]["cents"].as_f64(), Some(one));
    assert_eq!(spend["days"][1]["cents"].as_f64(), Some(one));
    assert_eq!(spend["totalCents"].as_f64(), Some(max));
    let spend = api(&db, "/api/spend", "account=acme&days=2").await;
    assert_eq!(spend["days"][0]["cents"].as_f64(), Some(max));
    assert_eq!(spend["days"][1]["cents"].as_f64(), Some(one));
    assert_eq!(spend["totalCents"].as_f64(), Some(max));
}
both!(spend_saturates_past_the_range);

// A revoke needs the session's token in the header and the cookie, a JSON body
// and a same-origin request; every refusal leaves the key live in the database.
async fn revoke_needs_csrf(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(opts("acme")).await.unwrap();
    let s = db.kl.admin(get("/api/session", "")).await;
    let token = body(&s)["csrf"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 32);
    let cookie = header(&s, "set-cookie").unwrap();
    assert_eq!(
        cookie,
        format!("keyleash_admin_csrf={token}; Path=/admin/; HttpOnly; SameSite=Strict")
    );
    // The same browser keeps its token.
    let mut again = get("/api/session", "");
    again.headers = vec![("Cookie".into(), format!("keyleash_admin_csrf={token}"))];
    assert_eq!(body(&db.kl.admin(again).await)["csrf"], token.as_str());

    let revoke = |headers: &[(&str, &str)], body: &str| AdminRequest {
        method: "POST".into(),
        path: "/api/revoke".into(),
        base: "/admin".into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
        ..AdminRequest::default()
    };
    let cookie = format!("other=1; keyleash_admin_csrf={token}");
    let good_body = format!("{{\"id\": {}}}", k.id);
    let json_ct = ("Content-Type", "application/json");
    let refused: [&[(&str, &str)]; 6] = [
        &[json_ct],
        &[json_ct, ("Cookie", &cookie)],
        &[json_ct, ("X-Keyleash-Csrf", &token)],
        &[
            ("Content-Type", "text/plain"),
            ("Cookie", &cookie),
            ("X-Keyleash-Csrf", &token),
        ],
        &[
            json_ct,
            ("Cookie", &cookie),
            ("X-Keyleash-Csrf", &token),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        &[
            json_ct,
            ("Cookie", &cookie),
            ("X-Keyleash-Csrf", &token),
            ("Origin", "http://evil.example"),
            ("Host", "127.0.0.1:3000"),
        ],
    ];
    for headers in refused {
        let r = db.kl.admin(revoke(headers, &good_body)).await;
        assert_eq!(r.status, 403, "{headers:?}");
        assert_eq!(body(&r)["error"]["code"], "csrf");
    }
    let live = format!(
        "SELECT COUNT(*) FROM {{keys}} WHERE id = {} AND revoked_at IS NULL",
        k.id
    );
    assert_eq!(
        db.scalar(&live).await,
        Some(1),
        "still live after the refusals"
    );

    let good: &[(&str, &str)] = &[
        json_ct,
        ("Cookie", &cookie),
        ("X-Keyleash-Csrf", &token),
        ("Sec-Fetch-Site", "same-origin"),
        ("Origin", "http://127.0.0.1:3000"),
        ("Host", "127.0.0.1:3000"),
    ];
    let r = db.kl.admin(revoke(good, "{\"id\": \"1\"}")).await;
    assert_eq!(
        (r.status, body(&r)["error"]["code"].clone()),
        (400, json!("invalid_argument"))
    );
    let r = db.kl.admin(revoke(good, &good_body)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(body(&r), json!({"revoked": true}));
    assert_eq!(db.scalar(&live).await, Some(0), "revoked in the database");
    let r = db.kl.admin(revoke(good, &good_body)).await;
    assert_eq!(
        (r.status, body(&r)["error"]["code"].clone()),
        (404, json!("not_found"))
    );
}
both!(revoke_needs_csrf);
