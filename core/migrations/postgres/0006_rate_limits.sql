-- Rate limits per key (requests and cents per period, holds open at once): JSON
-- text, a list of {name, unit, limit, period_us, burst, tat}, NULL for none. The
-- definitions and their state (each limit's theoretical arrival time) live on the
-- key row, so a charge, which already locks and writes the row, decides and
-- records its limits in the same statements at no extra round trip.
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS rate_limits TEXT;
