//! The main job, on embedded SQLite with no server: a key with a 50-cent monthly
//! budget and the `proxy.chat` scope takes 20 concurrent 5-cent charges. Exactly
//! ten fit; the demo prints which succeeded and the key's usage.
//!
//! Run it with `make demo` (or `cargo run -p keyleash-demo -- [sqlite-url]`).

use futures::future::join_all;
use keyleash::{Charge, CreateOptions, KeyLeash, Options, UsageRange};

#[tokio::main]
async fn main() -> Result<(), keyleash::Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sqlite::memory:".into());
    let kl = KeyLeash::connect(&url, Options::default()).await?;
    kl.migrate().await?;

    let key = kl
        .create(CreateOptions {
            account_id: "acct_demo".into(),
            scopes: Some(vec!["proxy.chat".into()]),
            budget_cents: Some(50.0),
            budget_period: Some("month".into()),
            expires_in: Some("7d".into()),
            delegated_by: Some("user_456".into()),
            name: Some("demo agent".into()),
            ..Default::default()
        })
        .await?;
    println!(
        "minted key #{} ({}…), budget 50¢/month, scope proxy.chat",
        key.id,
        &key.key[..11]
    );

    let v = kl.validate(&key.key).await?;
    println!(
        "validate: valid={} proxy.chat={} admin={}",
        v.is_valid(),
        v.has_scope("proxy.chat"),
        v.has_scope("admin")
    );

    println!("firing 20 concurrent 5¢ charges…");
    let calls = (1..=20).map(|i| {
        let (kl, raw) = (kl.clone(), key.key.clone());
        tokio::spawn(async move { (i, kl.track_usage(&raw, Charge::cents(5.0)).await) })
    });
    let mut ok = 0;
    for joined in join_all(calls).await {
        let (i, result) = joined.expect("charge task");
        let result = result?;
        let shown = serde_json::to_string(&result).unwrap_or_default();
        println!(
            "  charge {i:>2}: {}  {shown}",
            if result.success() {
                "ok     "
            } else {
                "refused"
            }
        );
        ok += usize::from(result.success());
    }

    let info = kl.validate(&key.key).await?;
    let ledger = kl.usage(key.id, UsageRange::default()).await?;
    let ledger_sum: f64 = ledger.iter().map(|e| e.amount_cents).sum();
    println!(
        "{ok} of 20 succeeded; validate now says: {}",
        serde_json::to_string(&info).unwrap_or_default()
    );
    for k in kl.list("acct_demo").await? {
        println!(
            "key #{} {:<12} used {:>5.2}¢ of {:>5.2}¢, ledger {} rows = {:.2}¢, resets {}",
            k.id,
            k.name,
            k.budget_used_cents,
            k.budget_cents.unwrap_or(f64::INFINITY),
            ledger.len(),
            ledger_sum,
            k.budget_reset_at
                .map(|t| keyleash::iso(&t))
                .unwrap_or_default()
        );
    }
    kl.close().await;
    if ok == 10 {
        Ok(())
    } else {
        Err(keyleash::Error::InvalidArgument(format!(
            "expected exactly 10 charges to fit, got {ok}"
        )))
    }
}
