//! Rate limits kept in the store, so that they hold across processes and
//! servers: one bucket per limited thing (a client address, an email domain, a
//! key tree), a token bucket over a window.

use crate::client::KeyLeash;
use crate::error::Result;

impl KeyLeash {
    /// One event against `bucket`, at most `window_ms` worth of events
    /// outstanding, one per `interval_ms`: `None` when it is allowed (and
    /// counted), else how many milliseconds until it would be.
    pub(crate) async fn rate_check(
        &self,
        bucket: &str,
        now_ms: i64,
        interval_ms: i64,
        window_ms: i64,
    ) -> Result<Option<i64>> {
        self.inner
            .store
            .rate_check(bucket, now_ms, interval_ms, window_ms)
            .await
    }
}
