//! The store going away: calls fail closed with `unavailable` (fast, never hanging),
//! nothing is half-applied, and the same instance recovers by itself when the
//! database is back. The outage is a TCP proxy in front of Postgres that this test
//! cuts and restores, so other tests sharing the server are not disturbed.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{budget, Db, Kind};
use keyleash::{Charge, CreateOptions, KeyLeash, Options};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// A cuttable TCP proxy on a fixed local port.
struct Proxy {
    port: u16,
    target: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = Proxy {
            port,
            target,
            tasks: Arc::default(),
        };
        p.listen();
        p
    }

    /// Accepts on the proxy port and pipes each connection to the target.
    fn listen(&self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .unwrap();
        let listener: TcpListener = socket.listen(64).unwrap();
        let (target, tasks) = (self.target.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Drops the listener and every open connection, as a crashed server would.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// The `host:port` of a Postgres URL, and the URL with that part replaced.
fn reroute(url: &str, port: u16) -> (String, String) {
    let scheme_end = url.find("://").expect("url scheme") + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host = &authority[host_start..];
    let target = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5432")
    };
    let rerouted = format!(
        "{}{}127.0.0.1:{port}{}",
        &url[..scheme_end],
        &authority[..host_start],
        &rest[authority_end..]
    );
    (target, rerouted)
}

// Pins fail-closed `unavailable` during an outage, no partial writes, and recovery without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_goes_away_and_comes_back() {
    let db = Db::open(Kind::Postgres).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let (target, _) = reroute(&db.url, 0);
    let proxy = Proxy::start(target).await;
    let (_, url) = reroute(&db.url, proxy.port);
    let options = Options {
        table_name: db.table.clone(),
        clock: db.kl.clock().clone(),
        acquire_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(2),
        ..Options::default()
    };
    let kl = KeyLeash::connect(&url, options).await.unwrap();
    assert!(kl
        .track_usage(&k.key, Charge::cents(10.0))
        .await
        .unwrap()
        .success());

    proxy.cut();
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(kl.validate(&k.key).await.unwrap_err().code(), "unavailable");
        assert_eq!(
            kl.track_usage(&k.key, Charge::cents(5.0))
                .await
                .unwrap_err()
                .code(),
            "unavailable"
        );
        let err = kl
            .create(CreateOptions {
                account_id: "a".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), "unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "fails within the timeouts: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        db.used_micros(k.id).await,
        10_000_000,
        "nothing was applied while down"
    );

    proxy.listen();
    let deadline = Instant::now() + Duration::from_secs(10);
    let result = loop {
        match kl.track_usage(&k.key, Charge::cents(5.0)).await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), "unavailable");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("did not recover: {e}"),
        }
    };
    assert!(result.success());
    assert!(kl.validate(&k.key).await.unwrap().is_valid());
    assert_eq!(db.used_micros(k.id).await, 15_000_000);
    assert_eq!(db.ledger(k.id).await, (15_000_000, 2));
    proxy.cut();
}

// Pins the URL rewriting the proxy relies on.
#[test]
fn reroutes_urls() {
    assert_eq!(
        reroute("postgres://u:p@db.example:6543/x?sslmode=disable", 7),
        (
            "db.example:6543".into(),
            "postgres://u:p@127.0.0.1:7/x?sslmode=disable".into()
        )
    );
    assert_eq!(
        reroute("postgresql://h/x", 9),
        ("h:5432".into(), "postgresql://127.0.0.1:9/x".into())
    );
}
