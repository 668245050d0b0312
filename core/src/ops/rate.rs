//! Rate limits kept in the store, so that they hold across processes and
//! servers: one bucket per limited thing (a client address, an email domain, a
//! key tree), a token bucket over a window.

use crate::client::KeyLeash;
use crate::error::{Error, Result};
use crate::limits::{check_text, MAX_SUBJECT_LEN};

impl KeyLeash {
    /// One event against `bucket` (a name of the caller's choosing, non-empty, at
    /// most 512 bytes), which allows one event per `interval_ms` with at most
    /// `window_ms` worth of events outstanding (so `window_ms / interval_ms` in a
    /// burst), at the clock's now: `None` when the event is allowed (and counted),
    /// else how many milliseconds until it would be (at least 1). A refused event
    /// is not counted. Decided in one atomic statement, so the limit holds across
    /// processes. What the self-serve routes' signup and mint limits run on.
    /// Errors: `invalid_argument` (an empty or too long bucket, `interval_ms` < 1,
    /// `window_ms` < `interval_ms`), `unavailable`.
    pub async fn rate_check(
        &self,
        bucket: &str,
        interval_ms: i64,
        window_ms: i64,
    ) -> Result<Option<i64>> {
        check_text("bucket", bucket, MAX_SUBJECT_LEN, true)?;
        if interval_ms < 1 || window_ms < interval_ms {
            return Err(Error::arg(format!(
                "interval_ms must be at least 1 and window_ms at least interval_ms, got {interval_ms} and {window_ms}"
            )));
        }
        let now_ms = self.inner.clock.now().timestamp_millis();
        self.inner
            .store
            .rate_check(bucket, now_ms, interval_ms, window_ms)
            .await
    }
}
