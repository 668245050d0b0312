//! What the CLI prints: aligned tables for a person, JSON for a script, export
//! records as JSON lines or CSV, and errors as one line on stderr.
//!
//! Nothing here reads a secret: the core's result types carry no key hash, and the
//! only raw key is `CreatedKey::key`, printed by [`Out::created`] alone.
//!
//! Stored text is the caller's (a key name from a signup form, an idempotency key
//! from a request header), so it is made harmless where it lands: table cells and
//! error messages show control characters as escapes ([`visible`]), CSV cells that
//! a spreadsheet would run as a formula get a leading `'` ([`csv_text`]). JSON
//! output and the JSON-lines export formats keep the exact text.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

use chrono::{DateTime, Utc};
use keyleash::{iso, CreatedKey, KeyDetails, KeySummary, LedgerEntry, LedgerRecord, Spender};
use serde::Serialize;

use crate::redact::Secrets;

/// A failed command: the error code, a one-line message and the exit status.
#[derive(Debug)]
pub struct Failure {
    code: &'static str,
    message: String,
    status: u8,
}

impl Failure {
    /// A failure with exit status 1.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: 1,
        }
    }

    /// The same failure with another exit status.
    pub fn status(mut self, status: u8) -> Self {
        self.status = status;
        self
    }

    /// No such key (exit status 1).
    pub fn not_found(message: String) -> Self {
        Self::new("not_found", message)
    }

    /// Prints `keyleash: <code>: <message>` on stderr (one line, control
    /// characters escaped, the passwords of `secrets` masked) and gives the status.
    /// A reader that went away (`keyleash export … | head`) ends the command
    /// quietly, with status 0.
    pub fn exit(self, secrets: &Secrets) -> u8 {
        if self.code == BROKEN_PIPE {
            return 0;
        }
        let message = secrets.redact(&self.message.replace(['\n', '\r'], " "));
        eprintln!("keyleash: {}: {}", self.code, visible(message.trim()));
        self.status
    }
}

impl From<keyleash::Error> for Failure {
    /// The core's code; exit status 2 for a bad argument (`invalid_*`), else 1.
    fn from(e: keyleash::Error) -> Self {
        let code = e.code();
        let status = if code.starts_with("invalid_") { 2 } else { 1 };
        let text = e.to_string();
        // The code already says it: `invalid_argument: limit …`, not `… invalid argument: limit …`.
        let message = text.strip_prefix("invalid argument: ").unwrap_or(&text);
        Self::new(code, message).status(status)
    }
}

/// The code of a closed stdout, never printed.
const BROKEN_PIPE: &str = "broken_pipe";

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Self::new(BROKEN_PIPE, "").status(0);
        }
        Self::new("io", format!("cannot write the output: {e}"))
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        match e.io_error_kind() {
            Some(kind) => io::Error::new(kind, e).into(),
            None => Self::new("io", format!("cannot write JSON: {e}")),
        }
    }
}

/// A clap error as one line with status 2 (`--help` and `--version` print as
/// usual); the value clap echoes is shown without the passwords of `secrets`.
pub fn clap_exit(e: &clap::Error, secrets: &Secrets) -> u8 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            u8::try_from(e.exit_code()).unwrap_or(2)
        }
        _ => {
            // clap's first paragraph (without its usage and tip), on one line.
            let text = e.render().to_string();
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = first.join(" ");
            let message = first.strip_prefix("error: ").unwrap_or(&first);
            Failure::new(
                "invalid_argument",
                format!("{message} (see keyleash --help)"),
            )
            .status(2)
            .exit(secrets)
        }
    }
}

/// Standard output, as a table or as JSON.
pub struct Out {
    w: BufWriter<io::Stdout>,
    json: bool,
}

type Written = Result<(), Failure>;

impl Out {
    /// Buffered stdout; `json` selects JSON documents over tables.
    pub fn stdout(json: bool) -> Self {
        Self {
            w: BufWriter::new(io::stdout()),
            json,
        }
    }

    /// Flushes; a closed pipe (`| head`) is not an error.
    pub fn flush(&mut self) -> Written {
        match self.w.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }

    fn doc(&mut self, value: &impl Serialize) -> Written {
        serde_json::to_writer_pretty(&mut self.w, value)?;
        writeln!(self.w)?;
        Ok(())
    }

    fn text(&mut self, text: &str) -> Written {
        match self.w.write_all(text.as_bytes()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }

    /// After `migrate`.
    pub fn migrated(&mut self, table: &str) -> Written {
        if self.json {
            return self.doc(&serde_json::json!({"migrated": true, "table": table}));
        }
        self.text(&format!("migrated: the tables of {table} are up to date\n"))
    }

    /// The one place a raw key is printed.
    pub fn created(&mut self, k: &CreatedKey) -> Written {
        if self.json {
            return self.doc(k);
        }
        let rows = vec![
            pair("key", k.key.clone()),
            pair("id", k.id.to_string()),
            pair("scopes", scopes(k.scopes.as_deref())),
            pair("budget", opt_cents(k.budget_cents)),
            pair("period", opt(k.budget_period.as_deref())),
            pair("expires", opt_time(k.expires_at)),
        ];
        self.text(&table(&[], &rows, &[]))?;
        eprintln!("keyleash: store the key now: it is never shown again");
        Ok(())
    }

    /// `list`.
    pub fn keys(&mut self, keys: &[KeySummary]) -> Written {
        if self.json {
            return self.doc(&keys);
        }
        let rows: Vec<Vec<String>> = keys
            .iter()
            .map(|k| {
                vec![
                    k.id.to_string(),
                    k.name.clone(),
                    k.key_prefix.clone(),
                    opt_cents(k.budget_cents),
                    cents(k.budget_used_cents),
                    cents(k.budget_held_cents),
                    opt(k.budget_period.as_deref()),
                    opt_time(k.expires_at),
                    opt_time(k.revoked_at),
                    scopes(k.scopes.as_deref()),
                ]
            })
            .collect();
        let headers = [
            "ID", "NAME", "PREFIX", "BUDGET", "USED", "HELD", "PERIOD", "EXPIRES", "REVOKED",
            "SCOPES",
        ];
        self.text(&table(&headers, &rows, &[0, 3, 4, 5]))
    }

    /// `show`.
    pub fn details(&mut self, d: &KeyDetails) -> Written {
        if self.json {
            return self.doc(d);
        }
        let k = &d.key;
        let rows = vec![
            pair("id", k.id.to_string()),
            pair("account", k.account_id.clone()),
            pair("name", k.name.clone()),
            pair("prefix", k.key_prefix.clone()),
            pair("status", d.status.as_str().to_string()),
            pair("budget", opt_cents(k.budget_cents)),
            pair("used", cents(k.budget_used_cents)),
            pair("held", cents(k.budget_held_cents)),
            pair("remaining", opt_cents(d.budget_remaining_cents)),
            pair("period", opt(k.budget_period.as_deref())),
            pair("reset", opt_time(k.budget_reset_at)),
            pair("expires", opt_time(k.expires_at)),
            pair("revoked", opt_time(k.revoked_at)),
            pair("created", opt_time(k.created_at)),
            pair("last used", opt_time(k.last_used_at)),
            pair("scopes", scopes(k.scopes.as_deref())),
        ];
        self.text(&table(&[], &rows, &[]))
    }

    /// After a revoke.
    pub fn revoked(&mut self, id: i64) -> Written {
        if self.json {
            return self.doc(&serde_json::json!({"id": id, "revoked": true}));
        }
        self.text(&format!("revoked: key {id}\n"))
    }

    /// After `set-budget`.
    pub fn ceiling(&mut self, account: &str, c: Option<f64>, period: Option<&str>) -> Written {
        if self.json {
            return self.doc(&serde_json::json!({
                "accountId": account, "budgetCents": c, "budgetPeriod": period,
            }));
        }
        let text = match c {
            None => format!("account {}: ceiling removed\n", visible(account)),
            Some(c) => format!(
                "account {}: ceiling {} cents {}\n",
                visible(account),
                cents(c),
                period.map_or("for its lifetime".to_string(), |p| format!("per {p}"))
            ),
        };
        self.text(&text)
    }

    /// `usage`.
    pub fn usage(&mut self, entries: &[LedgerEntry]) -> Written {
        if self.json {
            return self.doc(&entries);
        }
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                vec![
                    e.id.to_string(),
                    iso(&e.created_at),
                    cents(e.amount_cents),
                    opt(e.idempotency_key.as_deref()),
                    e.hold_id.map_or("-".into(), |h| h.to_string()),
                ]
            })
            .collect();
        let headers = ["LEDGER ID", "CREATED", "AMOUNT", "IDEMPOTENCY KEY", "HOLD"];
        self.text(&table(&headers, &rows, &[0, 2, 4]))
    }

    /// `top`.
    pub fn top(&mut self, spenders: &[Spender]) -> Written {
        if self.json {
            return self.doc(&spenders);
        }
        self.text(&spenders_table(spenders))
    }

    /// One refresh of `watch`: the screen is cleared first on a terminal; JSON is
    /// one line per refresh.
    pub fn watch(&mut self, spenders: &[Spender], window: &str, now: DateTime<Utc>) -> Written {
        if self.json {
            serde_json::to_writer(&mut self.w, &spenders)?;
            writeln!(self.w)?;
        } else {
            use std::io::IsTerminal;
            if io::stdout().is_terminal() {
                self.text("\x1b[H\x1b[2J")?;
            }
            let span = if window == "all" {
                "all time".to_string()
            } else {
                format!("the last {window}")
            };
            self.text(&format!(
                "keyleash watch: spend in {span}, at {} (Ctrl-C to stop)\n\n",
                iso(&now)
            ))?;
            self.text(&spenders_table(spenders))?;
        }
        self.flush()
    }
}

fn spenders_table(spenders: &[Spender]) -> String {
    let rows: Vec<Vec<String>> = spenders
        .iter()
        .enumerate()
        .map(|(i, s)| {
            vec![
                (i + 1).to_string(),
                s.key_id.map_or("-".into(), |k| k.to_string()),
                opt(s.account_id.as_deref()),
                opt(s.name.as_deref()),
                opt(s.key_prefix.as_deref()),
                cents(s.spent_cents),
                s.charges.to_string(),
            ]
        })
        .collect();
    let headers = ["#", "KEY", "ACCOUNT", "NAME", "PREFIX", "SPENT", "CHARGES"];
    if rows.is_empty() {
        return "no spend in this window\n".into();
    }
    table(&headers, &rows, &[0, 1, 5, 6])
}

/// How export records are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// The record as one JSON object per line.
    Jsonl,
    /// A header row, then one row per record (RFC 4180).
    Csv,
    /// A Stripe meter event (the body of `POST /v1/billing/meter_events`) per line,
    /// with this event name.
    Stripe(String),
    /// An OpenMeter CloudEvent (JSON, spec 1.0) per line, with this type.
    OpenMeter(String),
}

/// Export records, written one at a time.
pub struct Records {
    w: BufWriter<Box<dyn Write>>,
    format: Format,
}

const CSV_HEADER: &str =
    "id,ledgerId,keyId,accountId,amountCents,amountMicros,createdAt,idempotencyKey,holdId\n";

impl Records {
    /// A writer of records; CSV starts with its header row.
    pub fn new(w: Box<dyn Write>, format: Format) -> Result<Self, Failure> {
        let mut w = BufWriter::with_capacity(64 * 1024, w);
        if format == Format::Csv {
            w.write_all(CSV_HEADER.as_bytes())?;
        }
        Ok(Self { w, format })
    }

    /// Writes one record.
    pub fn write(&mut self, r: &LedgerRecord) -> Written {
        let event = match &self.format {
            Format::Stripe(name) => Some(stripe_event(name, r)),
            Format::OpenMeter(name) => Some(cloud_event(name, r)),
            Format::Jsonl | Format::Csv => None,
        };
        if let Some(event) = event {
            serde_json::to_writer(&mut self.w, &event)?;
        } else if self.format == Format::Csv {
            let fields = [
                csv_text(&r.id),
                r.ledger_id.to_string(),
                r.key_id.to_string(),
                r.account_id.as_deref().map(csv_text).unwrap_or_default(),
                r.amount_cents.to_string(),
                r.amount_micros.to_string(),
                iso(&r.created_at),
                r.idempotency_key
                    .as_deref()
                    .map(csv_text)
                    .unwrap_or_default(),
                r.hold_id.map(|h| h.to_string()).unwrap_or_default(),
            ];
            self.w.write_all(fields.join(",").as_bytes())?;
        } else {
            serde_json::to_writer(&mut self.w, r)?;
        }
        self.w.write_all(b"\n")?;
        Ok(())
    }

    /// Writes out what is buffered (before a shared progress bar is drawn).
    pub fn flush(&mut self) -> Written {
        Ok(self.w.flush()?)
    }

    /// Flushes the last records.
    pub fn finish(mut self) -> Written {
        self.flush()
    }
}

/// A Stripe meter event: `identifier` is the record's stable id (Stripe drops a
/// repeat within its deduplication window), the customer is the account, and the
/// value is the exact amount in micro-cents (Stripe meters take whole numbers; a
/// price per 1,000,000 units is a price per cent).
fn stripe_event(event_name: &str, r: &LedgerRecord) -> serde_json::Value {
    serde_json::json!({
        "event_name": event_name,
        "identifier": r.id,
        "timestamp": r.created_at.timestamp(),
        "payload": {
            "stripe_customer_id": r.account_id,
            "value": r.amount_micros.to_string(),
        },
    })
}

/// An OpenMeter CloudEvent: `id` is the record's stable id (OpenMeter drops a
/// repeat of the same source and id), the subject is the account (`key_<id>` for
/// a row without one), the data carries the amounts and the key.
fn cloud_event(event_type: &str, r: &LedgerRecord) -> serde_json::Value {
    let subject = r
        .account_id
        .clone()
        .unwrap_or_else(|| format!("key_{}", r.key_id));
    serde_json::json!({
        "specversion": "1.0",
        "id": r.id,
        "source": "keyleash",
        "type": event_type,
        "subject": subject,
        "time": iso(&r.created_at),
        "data": {
            "amountMicros": r.amount_micros,
            "amountCents": r.amount_cents,
            "keyId": r.key_id,
            "ledgerId": r.ledger_id,
            "idempotencyKey": r.idempotency_key,
            "holdId": r.hold_id,
        },
    })
}

/// A text cell of the CSV format, safe to open in a spreadsheet: text starting
/// with `=`, `+`, `-`, `@`, a tab or a carriage return (which Excel, LibreOffice
/// and Google Sheets read as a formula) gets a leading `'`, as OWASP's CSV
/// injection guidance says; then [`csv_field`]. Only for text columns: a negative
/// amount stays a number.
fn csv_text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        csv_field(&format!("'{s}"))
    } else {
        csv_field(s)
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A label and a value, as a row of a two-column table.
fn pair(label: &str, value: String) -> Vec<String> {
    vec![label.to_string(), value]
}

/// Cents with at least two decimals and at most six (micro-cents are exact).
pub fn cents(v: f64) -> String {
    let s = format!("{v:.6}");
    let trimmed = s.trim_end_matches('0');
    let decimals = trimmed.split('.').nth(1).map_or(0, str::len);
    if decimals >= 2 {
        trimmed.to_string()
    } else {
        format!("{v:.2}")
    }
}

fn opt_cents(v: Option<f64>) -> String {
    v.map_or("-".into(), cents)
}

fn opt(v: Option<&str>) -> String {
    v.unwrap_or("-").to_string()
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.as_ref().map_or("-".into(), iso)
}

fn scopes(s: Option<&[String]>) -> String {
    s.map_or("*".into(), |s| s.join(","))
}

/// Whether a terminal could act on `c` or draw text in another order: C0 and C1
/// controls, DEL, the Unicode bidi embeddings, overrides, isolates and marks, and
/// the line and paragraph separators.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` as a table or an error line shows it: `\n`, `\r`, `\t`, `\x1b` (ASCII
/// controls and DEL) and `\u{202e}` (the others of [`hidden`]) instead of the
/// characters, so stored text can neither drive the terminal nor start a row.
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Columns padded to their widest cell, two spaces apart; the columns in `right`
/// are right-aligned (numbers). Without headers, a label/value list. Cells are
/// shown [`visible`]: one line per row whatever the text holds.
pub fn table(headers: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let columns = rows.iter().map(Vec::len).chain([headers.len()]).max();
    let mut widths = vec![0; columns.unwrap_or(0)];
    let all = std::iter::once(headers.iter().map(|h| (*h).to_string()).collect::<Vec<_>>())
        .filter(|h| !h.is_empty())
        .chain(
            rows.iter()
                .map(|r| r.iter().map(|c| visible(c).into_owned()).collect()),
        )
        .collect::<Vec<_>>();
    for row in &all {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &all {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let pad = widths[i] - cell.chars().count();
                if right.contains(&i) {
                    format!("{}{cell}", " ".repeat(pad))
                } else if i + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell}{}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A progress bar on stderr for `export`: `[#####-----]  52%  520,000 of
/// 1,000,000 records`, redrawn in place when the percentage moves (at most 101
/// times), then ended with a newline. The total is counted before the export
/// starts; rows charged meanwhile can make the count pass it, which shows as 100%.
///
/// When the records go to the same terminal (stdout and stderr both one), the bar
/// is `shared`: [`Progress::clear`] erases it before each record is written and
/// [`Progress::step`] draws it again below, so a record never starts on the bar's
/// line. A bar dropped before [`Progress::done`] (the export failed) ends its line,
/// so the error that follows starts on a line of its own.
pub struct Progress {
    total: u64,
    done: u64,
    shown: Option<u64>,
    shared: bool,
    ended: bool,
}

impl Progress {
    /// A bar for `total` records, drawn at 0%; `shared` when stdout is the same
    /// terminal.
    pub fn new(total: u64, shared: bool) -> Self {
        let mut bar = Self {
            total,
            done: 0,
            shown: None,
            shared,
            ended: false,
        };
        bar.draw();
        bar
    }

    /// Erases the bar's line (a shared bar, before a record is written).
    pub fn clear(&mut self) {
        if self.shared {
            eprint!("\r\x1b[K");
        }
    }

    /// One more record written.
    pub fn step(&mut self) {
        self.done += 1;
        if self.shared || Some(self.percent()) != self.shown {
            self.draw();
        }
    }

    /// The final state (100% and the count), and a newline.
    pub fn done(mut self) {
        self.total = self.total.max(self.done);
        self.draw();
        self.end();
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            eprintln!();
        }
    }

    fn percent(&self) -> u64 {
        (self.done.min(self.total) * 100)
            .checked_div(self.total)
            .unwrap_or(100)
    }

    fn draw(&mut self) {
        const WIDTH: u64 = 30;
        let percent = self.percent();
        let filled = usize::try_from(percent * WIDTH / 100).unwrap_or(0);
        let empty = usize::try_from(WIDTH).unwrap_or(0) - filled;
        eprint!(
            "\r[{}{}] {percent:>3}%  {} of {} records",
            "#".repeat(filled),
            "-".repeat(empty),
            grouped(self.done),
            grouped(self.total.max(self.done)),
        );
        self.shown = Some(percent);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.end();
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Amounts keep every micro-cent and always show cents.
    #[test]
    fn cents_show_two_to_six_decimals() {
        assert_eq!(cents(12.5), "12.50");
        assert_eq!(cents(0.0), "0.00");
        assert_eq!(cents(0.000_001), "0.000001");
        assert_eq!(cents(1.234_5), "1.2345");
    }

    // Fields with separators are quoted, quotes doubled.
    #[test]
    fn csv_quotes_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    // Numbers right-aligned, text left-aligned, no trailing blanks.
    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["1".into(), "a".into(), "x".into()],
            vec!["10".into(), "bbb".into(), "y".into()],
        ];
        let t = table(&["ID", "NAME", "Z"], &rows, &[0]);
        assert_eq!(t, "ID  NAME  Z\n 1  a     x\n10  bbb   y\n");
    }
}
