-- Signup rate limits: one row per client address or email domain (the bucket),
-- holding its GCRA "theoretical arrival time" in milliseconds since the epoch.
-- Each check is one atomic upsert, so the limit holds across processes and servers.
CREATE TABLE IF NOT EXISTS {{rate}} (
  bucket TEXT PRIMARY KEY,
  tat BIGINT NOT NULL,
  allowed BOOLEAN NOT NULL
);
