//! The HTTP rules of docs/http.md as the Express and FastAPI integrations receive them.

mod common;

use chrono::Duration;
use common::{budget, opts, Db, Kind};
use keyleash::{Access, CreateOptions, Reply, Route, SelfServeOptions};
use serde_json::{json, Value};

async fn denied(db: &Db, header: Option<&str>, scope: Option<&str>) -> Reply {
    match db.kl.authenticate(header, scope).await {
        Access::Denied(r) => r,
        Access::Granted(_) => panic!("expected a denial"),
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

// Pins every status of the middleware: 401 missing/invalid/expired/revoked, 429, 403, 500, granted.
async fn middleware_statuses(kind: Kind) {
    let db = Db::open(kind).await;
    let scoped = CreateOptions {
        scopes: Some(vec!["proxy.*".into()]),
        expires_in: Some("1h".into()),
        ..budget("a", 10.0, None)
    };
    let k = db.kl.create(scoped).await.unwrap();
    let h = bearer(&k.key);
    let r = denied(&db, None, None).await;
    assert_eq!(
        (r.status, r.body),
        (401, json!({"error": "Missing API key"}))
    );
    let r = denied(&db, Some("Basic abc"), None).await;
    assert_eq!(r.status, 401);
    let r = denied(&db, Some("Bearer ak_nope"), None).await;
    assert_eq!((r.status, r.body), (401, json!({"error": "invalid"})));
    let r = denied(&db, Some(&h), Some("billing.write")).await;
    assert_eq!(
        (r.status, r.body),
        (
            403,
            json!({"error": "insufficient_scope", "required": "billing.write", "available": ["proxy.*"]})
        )
    );
    match db.kl.authenticate(Some(&h), Some("proxy.chat")).await {
        Access::Granted(info) => assert_eq!(info.id, k.id),
        Access::Denied(r) => panic!("denied: {r:?}"),
    }
    assert!(db.charge(&k.key, 10.0).await.success());
    let r = denied(&db, Some(&h), Some("proxy.chat")).await;
    assert_eq!(
        (r.status, r.body),
        (429, json!({"error": "budget_exceeded"}))
    );
    db.clock().advance(Duration::hours(1));
    let r = denied(&db, Some(&h), None).await;
    assert_eq!((r.status, r.body), (401, json!({"error": "expired"})));
    db.kl.revoke(k.id, None).await.unwrap();
    let r = denied(&db, Some(&h), None).await;
    assert_eq!((r.status, r.body), (401, json!({"error": "revoked"})));
    db.kl.close().await;
    let r = denied(&db, Some(&h), None).await;
    assert_eq!(
        (r.status, r.body),
        (500, json!({"error": "auth_unavailable"}))
    );
}
both!(middleware_statuses);

// Pins signup: only signup scopes, a fresh account each time, email rules, the expiry cap.
async fn signup_rules(kind: Kind) {
    let db = Db::open(kind).await;
    let o = SelfServeOptions {
        signup_scopes: Some(vec!["proxy.chat".into()]),
        ..SelfServeOptions::default()
    };
    let signup = |body: Value| {
        let o = o.clone();
        let kl = db.kl.clone();
        async move {
            kl.self_serve(Route::Signup, None, &body.to_string(), None, &o)
                .await
        }
    };
    let r = signup(json!({"scopes": ["admin"], "email": "x@y.z"})).await;
    assert_eq!(
        (r.status, r.body),
        (
            400,
            json!({"error": "Scopes not allowed on signup: admin", "allowed": ["proxy.chat"]})
        )
    );
    let r = signup(json!({"email": "nope"})).await;
    assert_eq!(
        (r.status, r.body),
        (400, json!({"error": "Valid email is required"}))
    );
    let r = signup(json!({"email": "x@y.z", "expires_in": "2d"})).await;
    assert_eq!(
        (r.status, r.body["error"].clone()),
        (400, json!("invalid_argument"))
    );
    let r = signup(json!({"email": "x@y.z", "budget_cents": "ten"})).await;
    assert_eq!(
        (r.status, r.body["error"].clone()),
        (400, json!("invalid_argument"))
    );
    let r = db
        .kl
        .self_serve(Route::Signup, None, "{not json", None, &o)
        .await;
    assert_eq!(r.status, 400);
    let a = signup(json!({"email": "x@y.z", "budget_cents": 5})).await;
    let b = signup(json!({"email": "x@y.z"})).await;
    assert_eq!((a.status, b.status), (201, 201));
    assert_eq!(a.body["scopes"], json!(["proxy.chat"]));
    assert_eq!(a.body["expiresAt"], json!("2026-01-16T12:00:00.000Z"));
    let ia = db.info(a.body["key"].as_str().unwrap()).await;
    let ib = db.info(b.body["key"].as_str().unwrap()).await;
    assert_ne!(ia.account_id, ib.account_id);
    assert_eq!(ia.user_id.as_deref(), Some("x@y.z"));
    assert_eq!(ia.budget_cents, Some(5.0));
    // Without signup scopes a signup key is scopeless: an empty list, not "all".
    let none = SelfServeOptions {
        require_email: false,
        ..SelfServeOptions::default()
    };
    let r = db.kl.self_serve(Route::Signup, None, "", None, &none).await;
    assert_eq!((r.status, r.body["scopes"].clone()), (201, json!([])));
}
both!(signup_rules);

// Pins POST /sdk-keys attenuation and DELETE /sdk-keys/:id ownership.
async fn children_and_revoke(kind: Kind) {
    let db = Db::open(kind).await;
    let o = SelfServeOptions::default();
    let parent = CreateOptions {
        scopes: Some(vec!["proxy.chat".into(), "usage.read".into()]),
        expires_in: Some("2h".into()),
        ..budget("a", 50.0, None)
    };
    let p = db.kl.create(parent).await.unwrap();
    let h = bearer(&p.key);
    let mint = |body: Value| {
        let (kl, h, o) = (db.kl.clone(), h.clone(), o.clone());
        async move {
            kl.self_serve(Route::Mint, Some(&h), &body.to_string(), None, &o)
                .await
        }
    };
    let r = mint(json!({"scopes": ["admin"]})).await;
    assert_eq!(
        (r.status, r.body["error"].clone()),
        (403, json!("insufficient_scope"))
    );
    let r = mint(json!({"budget_cents": 51})).await;
    assert_eq!(
        (r.status, r.body["error"].clone()),
        (403, json!("budget_exceeds_parent"))
    );
    let r = mint(json!({"expires_in": "3h"})).await;
    assert_eq!(
        (r.status, r.body["error"].clone()),
        (403, json!("expiry_exceeds_parent"))
    );
    let r = mint(json!({"scopes": ["usage.read"], "budget_cents": 20})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let child = r.body["key"].as_str().unwrap().to_string();
    let info = db.info(&child).await;
    assert_eq!(info.scopes, Some(vec!["usage.read".to_string()]));
    assert_eq!(info.expires_at, db.info(&p.key).await.expires_at);
    assert_eq!(info.account_id, "a");
    // The child draws on the parent: spending the parent's 50 exhausts the child.
    assert!(db.charge(&p.key, 45.0).await.success());
    assert!(!db.charge(&child, 6.0).await.success());
    let me = db
        .kl
        .self_serve(Route::Me, Some(&bearer(&child)), "", None, &o)
        .await;
    assert_eq!(
        (me.status, me.body["budgetRemainingCents"].clone()),
        (200, json!(5.0))
    );
    // Revoke: another account's key is not found; a bad id is 400; the own key is revoked.
    let stranger = db.kl.create(opts("b")).await.unwrap();
    let del = |id: String| {
        let (kl, h, o) = (db.kl.clone(), h.clone(), o.clone());
        async move {
            kl.self_serve(Route::Revoke(&id), Some(&h), "", None, &o)
                .await
        }
    };
    let r = del(stranger.id.to_string()).await;
    assert_eq!((r.status, r.body), (404, json!({"error": "not_found"})));
    assert!(db.reason(&stranger.key).await.is_none());
    assert_eq!(del("12abc".into()).await.status, 400);
    let child_id = info.id.to_string();
    assert_eq!(del(child_id.clone()).await.body, json!({"revoked": true}));
    assert_eq!(del(child_id).await.status, 404);
    let r = db.kl.self_serve(Route::Me, None, "", None, &o).await;
    assert_eq!(r.status, 401);
}
both!(children_and_revoke);

// Pins that a store failure's reply carries a loggable cause, never sent to the client.
async fn unavailable_carries_cause(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(opts("a")).await.unwrap();
    db.kl.close().await;
    let r = denied(&db, Some(&bearer(&k.key)), None).await;
    assert_eq!(r.body, json!({"error": "auth_unavailable"}));
    let cause = r.cause.expect("a cause to log");
    assert!(cause.contains("unavailable"), "{cause}");
    let r = db
        .kl
        .self_serve(
            Route::Signup,
            None,
            r#"{"email":"a@b.c"}"#,
            None,
            &SelfServeOptions::default(),
        )
        .await;
    assert_eq!((r.status, r.cause.is_some()), (500, true));
}
both!(unavailable_carries_cause);

// Pins the strict bodies: unknown fields named, the 64 KiB limit, the operator's
// signup period, and a child that may not reset more often than its caller.
async fn strict_bodies(kind: Kind) {
    let db = Db::open(kind).await;
    let o = SelfServeOptions {
        signup_scopes: Some(vec!["proxy.chat".into()]),
        signup_budget_cents: Some(50.0),
        signup_expires_in: "30d".into(),
        signup_budget_period: Some("week".into()),
        ..SelfServeOptions::default()
    };
    let signup = |body: String| {
        let (kl, o) = (db.kl.clone(), o.clone());
        async move {
            kl.self_serve(Route::Signup, None, &body, Some("10.0.0.1"), &o)
                .await
        }
    };
    let r = signup(r#"{"email":"a@b.c","budgetCents":5}"#.into()).await;
    assert_eq!(
        (r.status, &r.body["error"]),
        (400, &json!("invalid_argument"))
    );
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("unknown field `budgetCents`"));
    let r = signup(r#"{"email":"a@b.c","budget_period":"day"}"#.into()).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["message"].as_str().unwrap().contains("(week)"));
    let big = format!(r#"{{"email":"a@b.c","name":"{}"}}"#, "x".repeat(70_000));
    let r = signup(big).await;
    assert_eq!(r, Reply::payload_too_large());
    assert_eq!(r.status, 413);
    let r = signup(r#"{"email":"a@b.c","budget_period":"week"}"#.into()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["budgetPeriod"], json!("week"));
    let caller = format!("Bearer {}", r.body["key"].as_str().unwrap());
    let mint = |body: &'static str| {
        let (kl, caller) = (db.kl.clone(), caller.clone());
        async move {
            kl.self_serve(
                Route::Mint,
                Some(&caller),
                body,
                None,
                &SelfServeOptions::default(),
            )
            .await
        }
    };
    let r = mint(r#"{"budgetCents":20}"#).await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().contains("budgetCents"));
    let r = mint(r#"{"email":"a@b.c"}"#).await;
    assert_eq!(r.status, 400, "mint has no email field");
    let r = mint(r#"{"budget_cents":5,"budget_period":"day"}"#).await;
    assert_eq!(
        (r.status, &r.body["error"]),
        (403, &json!("period_shorter_than_parent"))
    );
    for ok in [
        r#"{"budget_cents":5,"budget_period":"month"}"#,
        r#"{"budget_cents":5}"#,
    ] {
        assert_eq!(mint(ok).await.status, 201, "{ok}");
    }
    let lifetime = db.kl.create(budget("b", 10.0, None)).await.unwrap();
    let r = db
        .kl
        .self_serve(
            Route::Mint,
            Some(&bearer(&lifetime.key)),
            r#"{"budget_period":"month"}"#,
            None,
            &SelfServeOptions::default(),
        )
        .await;
    assert_eq!(r.status, 403, "a lifetime cap is the longest period");
    let r = db
        .kl
        .self_serve(
            Route::Mint,
            Some(&bearer(&lifetime.key)),
            r#"{"budget_period":"year"}"#,
            None,
            &SelfServeOptions::default(),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["error"]),
        (400, &json!("invalid_period"))
    );
}
both!(strict_bodies);

// Pins the signup rate limit: 20 an hour per address by default, shared by two
// instances (as two processes would be), 429 with Retry-After, per-domain too,
// and room again after the interval.
async fn signup_rate_limit(kind: Kind) {
    let db = Db::open(kind).await;
    let other = db.another().await;
    let o = SelfServeOptions {
        signup_rate_limit_per_domain: Some(25),
        ..SelfServeOptions::default()
    };
    let body = r#"{"email":"a@example.com"}"#;
    let mut created = 0;
    for i in 0..21 {
        let kl = if i % 2 == 0 { &db.kl } else { &other };
        let r = kl
            .self_serve(Route::Signup, None, body, Some("10.0.0.7"), &o)
            .await;
        if r.status == 201 {
            created += 1;
        } else {
            assert_eq!(i, 20, "only the 21st is refused");
            assert_eq!((r.status, &r.body["error"]), (429, &json!("rate_limited")));
            assert_eq!(r.retry_after, Some(180), "one interval of 3 minutes");
            assert_eq!(r.body["retryAfter"], json!(180));
        }
    }
    assert_eq!(created, 20);
    assert_eq!(
        db.scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM {keys}")
            .await,
        Some(20)
    );
    // Another address is not affected, until the domain's 25 are used up.
    for _ in 0..5 {
        let r = db
            .kl
            .self_serve(Route::Signup, None, body, Some("10.0.0.8"), &o)
            .await;
        assert_eq!(r.status, 201);
    }
    let r = db
        .kl
        .self_serve(Route::Signup, None, body, Some("10.0.0.9"), &o)
        .await;
    assert_eq!(r.status, 429, "the domain limit");
    // Three minutes later the first address has room for one more.
    db.clock().advance(Duration::minutes(3));
    let r = db
        .kl
        .self_serve(
            Route::Signup,
            None,
            r#"{"email":"a@other.org"}"#,
            Some("10.0.0.7"),
            &o,
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = db
        .kl
        .self_serve(
            Route::Signup,
            None,
            r#"{"email":"a@other.org"}"#,
            Some("10.0.0.7"),
            &o,
        )
        .await;
    assert_eq!(r.status, 429);
    // Off when asked.
    let off = SelfServeOptions {
        signup_rate_limit: None,
        ..SelfServeOptions::default()
    };
    let r = db
        .kl
        .self_serve(
            Route::Signup,
            None,
            r#"{"email":"a@other.org"}"#,
            Some("10.0.0.7"),
            &off,
        )
        .await;
    assert_eq!(r.status, 201);
    let bad = SelfServeOptions {
        signup_rate_limit: Some(0),
        ..SelfServeOptions::default()
    };
    assert_eq!(bad.check().unwrap_err().code(), "invalid_argument");
    assert!(SelfServeOptions::default().check().is_ok());
}
both!(signup_rate_limit);

// Pins issue 21 (4): signups whose client address is unknown (a Unix socket) share
// one bucket of the per-address limit instead of skipping it; an empty address is
// unknown too, and a known address keeps its own bucket.
async fn unknown_address_shares_one_limit(kind: Kind) {
    let db = Db::open(kind).await;
    let o = SelfServeOptions::default();
    let body = r#"{"email":"a@example.com"}"#;
    let mut statuses = Vec::new();
    for i in 0..25 {
        let address = if i % 2 == 0 { None } else { Some("") };
        let r = db
            .kl
            .self_serve(Route::Signup, None, body, address, &o)
            .await;
        statuses.push(r.status);
    }
    assert_eq!(statuses, [vec![201; 20], vec![429; 5]].concat());
    let r = db
        .kl
        .self_serve(Route::Signup, None, body, Some("10.0.0.1"), &o)
        .await;
    assert_eq!(r.status, 201, "{r:?}");
}
both!(unknown_address_shares_one_limit);

// Pins issue 21 (9): the body is decoded once, in the core: a leading UTF-8 BOM is
// skipped, a charset other than UTF-8 is 415 unsupported_charset, bytes that are
// not UTF-8 are 400.
async fn body_encodings(kind: Kind) {
    let db = Db::open(kind).await;
    let o = SelfServeOptions::default();
    let p = db.kl.create(opts("a")).await.unwrap();
    let h = bearer(&p.key);
    let r = db
        .kl
        .self_serve(
            Route::Mint,
            Some(&h),
            "\u{feff}{\"name\":\"bom\"}",
            None,
            &o,
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = db
        .kl
        .self_serve_bytes(
            Route::Mint,
            Some(&h),
            b"",
            Some("text/plain; charset=utf-16le"),
            None,
            &o,
        )
        .await;
    assert_eq!(
        r.status, 201,
        "an empty body is {{}} whatever the header: {r:?}"
    );
    let raw = |body: Vec<u8>, ct: &'static str| {
        let (kl, o) = (db.kl.clone(), o.clone());
        async move {
            kl.self_serve_bytes(Route::Signup, None, &body, Some(ct), Some("10.1.1.1"), &o)
                .await
        }
    };
    let json = r#"{"email":"a@b.c"}"#;
    let utf16: Vec<u8> = json.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let r = raw(utf16, "application/json; charset=utf-16le").await;
    assert_eq!(
        (r.status, r.body.clone()),
        (
            415,
            json!({"error": "unsupported_charset",
                   "message": "request body: charset \"utf-16le\" is not supported; send JSON as UTF-8"})
        )
    );
    let r = raw(json.into(), "application/json; charset=latin1").await;
    assert_eq!(
        (r.status, &r.body["error"]),
        (415, &json!("unsupported_charset"))
    );
    let r = raw(json.into(), "application/json; Charset=\"UTF-8\"").await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = raw(
        [&b"\xEF\xBB\xBF"[..], json.as_bytes()].concat(),
        "application/json",
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = raw(b"{\"email\":\"a\xff@b.c\"}".to_vec(), "application/json").await;
    assert_eq!(
        (r.status, &r.body["error"]),
        (400, &json!("invalid_argument"))
    );
    assert!(r.body["message"].as_str().unwrap().contains("not UTF-8"));
}
both!(body_encodings);

// Pins issue 21 (10): a key revokes itself and its descendants only: a child can
// not revoke its parent or a sibling (404, as an unknown id), a parent can revoke
// its grandchild, a key can revoke itself.
async fn revoke_only_descendants(kind: Kind) {
    let db = Db::open(kind).await;
    let o = SelfServeOptions::default();
    let root = db.kl.create(opts("a")).await.unwrap();
    let mint = |key: String| {
        let (kl, o) = (db.kl.clone(), o.clone());
        async move {
            let r = kl
                .self_serve(Route::Mint, Some(&bearer(&key)), "", None, &o)
                .await;
            assert_eq!(r.status, 201, "{r:?}");
            (
                r.body["key"].as_str().unwrap().to_string(),
                r.body["id"].as_i64().unwrap(),
            )
        }
    };
    let (child, child_id) = mint(root.key.clone()).await;
    let (sibling, sibling_id) = mint(root.key.clone()).await;
    let (grandchild, grandchild_id) = mint(child.clone()).await;
    let peer = db.kl.create(opts("a")).await.unwrap();
    let del = |key: String, id: i64| {
        let (kl, o) = (db.kl.clone(), o.clone());
        async move {
            let id = id.to_string();
            kl.self_serve(Route::Revoke(&id), Some(&bearer(&key)), "", None, &o)
                .await
        }
    };
    let not_found = (404, json!({"error": "not_found"}));
    let r = del(child.clone(), root.id).await;
    assert_eq!(
        (r.status, r.body),
        not_found.clone(),
        "a child revoking its parent"
    );
    let r = del(child.clone(), sibling_id).await;
    assert_eq!((r.status, r.body), not_found.clone(), "a sibling");
    let r = del(child.clone(), peer.id).await;
    assert_eq!(
        (r.status, r.body),
        not_found.clone(),
        "an unrelated key of the account"
    );
    let r = del(grandchild.clone(), child_id).await;
    assert_eq!(
        (r.status, r.body),
        not_found.clone(),
        "a grandchild revoking its parent"
    );
    assert!(db.reason(&root.key).await.is_none());
    assert!(db.reason(&sibling).await.is_none());
    assert!(db.reason(&peer.key).await.is_none());
    assert!(db.reason(&child).await.is_none());
    let r = del(root.key.clone(), grandchild_id).await;
    assert_eq!((r.status, r.body), (200, json!({"revoked": true})));
    let r = del(sibling.clone(), sibling_id).await;
    assert_eq!(
        (r.status, r.body),
        (200, json!({"revoked": true})),
        "itself"
    );
    let r = del(root.key.clone(), child_id).await;
    assert_eq!((r.status, r.body), (200, json!({"revoked": true})));
}
both!(revoke_only_descendants);

// Pins issue 21 (10): POST /sdk-keys is limited per calling key, by default 50
// children an hour, then 429 rate_limited with Retry-After; shared by two
// instances on one database; another key has its own allowance.
async fn mint_rate_limit_default(kind: Kind) {
    let db = Db::open(kind).await;
    let other = db.another().await;
    let o = SelfServeOptions::default();
    let p = db.kl.create(opts("a")).await.unwrap();
    let q = db.kl.create(opts("a")).await.unwrap();
    let mut statuses = Vec::new();
    for i in 0..52 {
        let kl = if i % 2 == 0 { &db.kl } else { &other };
        let r = kl
            .self_serve(Route::Mint, Some(&bearer(&p.key)), "", None, &o)
            .await;
        if r.status == 429 {
            assert_eq!(r.body["error"], json!("rate_limited"));
            assert_eq!(r.retry_after, Some(72), "one interval: an hour / 50");
            assert_eq!(r.body["retryAfter"], json!(72));
            assert!(r.body["message"]
                .as_str()
                .unwrap()
                .starts_with("too many keys minted by this key tree: at most 50 an hour"));
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [vec![201; 50], vec![429; 2]].concat());
    let r = db
        .kl
        .self_serve(Route::Mint, Some(&bearer(&q.key)), "", None, &o)
        .await;
    assert_eq!(r.status, 201, "another key's own allowance");
    db.clock().advance(Duration::seconds(72));
    let r = db
        .kl
        .self_serve(Route::Mint, Some(&bearer(&p.key)), "", None, &o)
        .await;
    assert_eq!(r.status, 201, "room again after one interval");
}
both!(mint_rate_limit_default);

// Pins the mint_rate_limit option: a chosen limit counted per key tree, None for
// off, range checked.
async fn mint_rate_limit_option(kind: Kind) {
    let db = Db::open(kind).await;
    let p = db.kl.create(opts("a")).await.unwrap();
    let h = bearer(&p.key);
    let three = SelfServeOptions {
        mint_rate_limit: Some(3),
        ..SelfServeOptions::default()
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            db.kl
                .self_serve(Route::Mint, Some(&h), "", None, &three)
                .await
                .status,
        );
    }
    assert_eq!(statuses, [201, 201, 201, 429]);
    // The allowance is the tree's: a child's mints count on its root, so a leaked
    // key cannot multiply it by minting children that mint in turn.
    let t = db.kl.create(opts("a")).await.unwrap();
    let r = db
        .kl
        .self_serve(Route::Mint, Some(&bearer(&t.key)), "", None, &three)
        .await;
    let child = bearer(r.body["key"].as_str().unwrap());
    let mut statuses = Vec::new();
    for h in [&child, &child, &child, &bearer(&t.key)] {
        statuses.push(
            db.kl
                .self_serve(Route::Mint, Some(h), "", None, &three)
                .await
                .status,
        );
    }
    assert_eq!(statuses, [201, 201, 429, 429]);
    // A refused child does not use up the allowance.
    let q = db.kl.create(opts("a")).await.unwrap();
    let hq = bearer(&q.key);
    for _ in 0..5 {
        let r = db
            .kl
            .self_serve(Route::Mint, Some(&hq), "{\"nope\":1}", None, &three)
            .await;
        assert_eq!(r.status, 400);
    }
    let r = db
        .kl
        .self_serve(Route::Mint, Some(&hq), "", None, &three)
        .await;
    assert_eq!(r.status, 201);
    let off = SelfServeOptions {
        mint_rate_limit: None,
        ..SelfServeOptions::default()
    };
    for _ in 0..60 {
        let r = db
            .kl
            .self_serve(Route::Mint, Some(&hq), "", None, &off)
            .await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    for bad in [0, 1_000_001] {
        let o = SelfServeOptions {
            mint_rate_limit: Some(bad),
            ..SelfServeOptions::default()
        };
        let e = o.check().unwrap_err();
        assert_eq!(e.code(), "invalid_argument");
        assert!(e.to_string().contains("mint rate limit"), "{e}");
    }
}
both!(mint_rate_limit_option);
