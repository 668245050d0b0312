//! `keyleash`: the command line for operators of a keyleash keys table.
//!
//! A library with one entry point, [`run`], so that the same code answers
//! `keyleash …` (this crate's binary), `npx keyleash …` (the npm package calls it
//! through its addon) and `keyleash …` / `python -m keyleash …` (the wheel calls
//! it through its extension).
//!
//! Argument parsing (clap) and formatting only: every read and write is a public
//! method of the core crate, so the CLI, the bindings and the tests share one
//! implementation of the SQL. Output is an aligned table for a person, or one JSON
//! document with `--json` (export writes its own format). Errors are one line on
//! stderr, `keyleash: <code>: <message>`, with the core's error code; the exit
//! status is 2 for a bad argument and 1 for anything else.
//!
//! Secrets: a raw key is printed by `create` and nowhere else; no output carries
//! a key hash; the database URL (which may hold a password) is never printed, and
//! `--help` does not show the value of `DATABASE_URL`. A URL typed in the wrong
//! place is echoed by clap or the core in their error; every error message goes
//! through `redact` first, which masks the passwords of the arguments.
//!
//! Stored text (names, accounts, idempotency keys) is the application's clients':
//! tables escape its control characters and CSV cells cannot start a formula
//! (`output`).

mod output;
mod redact;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use keyleash::{CreateOptions, KeyLeash, Options, SpendBy, UsageRange};

use crate::output::{Failure, Out};

/// keyleash for operators: keys, budgets and the ledger of one keys table.
#[derive(Parser, Debug)]
#[command(name = "keyleash", version, max_term_width = 100)]
struct Cli {
    /// The database: postgres://user:pass@host/db or sqlite://path.db (a SQLite
    /// file is created if missing). Never printed.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://keyleash.db"
    )]
    url: String,

    /// The keys table (`name` or `schema.name` on Postgres), as configured in the
    /// application; the ledger and the other tables are named after it.
    #[arg(long, global = true, default_value = "sdk_api_keys")]
    table: String,

    /// One JSON document on stdout instead of a table (for scripts).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the tables, or add what is missing to existing ones (idempotent).
    Migrate,
    /// Mint a key: prints the raw key (this one time only) and its id.
    Create(CreateArgs),
    /// The keys of an account, revoked ones included, oldest first.
    List {
        /// The account.
        #[arg(long)]
        account: String,
    },
    /// One key's numbers: budget, used, held, remaining, period, reset, expiry, status.
    Show {
        /// The key's id.
        id: i64,
    },
    /// Revoke a key (and with it every key below it).
    Revoke {
        /// The key's id.
        id: i64,
        /// Revoke only if the key belongs to this account.
        #[arg(long)]
        account: Option<String>,
    },
    /// Set or remove an account's ceiling: a cap on what all its keys spend together.
    SetBudget(SetBudgetArgs),
    /// A key's ledger rows (charges and settles), oldest first.
    Usage {
        /// The key's id.
        id: i64,
        /// Earliest instant included (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// First instant excluded (RFC 3339).
        #[arg(long)]
        to: Option<String>,
    },
    /// The biggest spenders: sums of ledger amounts in the window ending now.
    Top(TopArgs),
    /// `top`, refreshed every interval until Ctrl-C.
    Watch {
        /// Time between refreshes: 2s, 1m, …
        #[arg(long, default_value = "2s")]
        interval: String,
        #[command(flatten)]
        top: TopArgs,
        /// Stop after this many refreshes (for tests).
        #[arg(long, hide = true)]
        count: Option<u64>,
    },
    /// The ledger of a window, one record per row, each with a stable id.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// The owning account (taken from the parent when --parent is given).
    #[arg(long, required_unless_present = "parent")]
    account: Option<String>,
    /// Comma-separated scopes (default: all scopes).
    #[arg(long, value_delimiter = ',')]
    scopes: Option<Vec<String>>,
    /// The cap in cents (sub-cent amounts allowed; default: uncapped).
    #[arg(long, allow_negative_numbers = true)]
    budget_cents: Option<f64>,
    /// When the cap resets (default: never, a lifetime cap).
    #[arg(long, value_enum, requires = "budget_cents")]
    budget_period: Option<PeriodArg>,
    /// Expiry from now: 30s, 15m, 12h, 30d, 2w, 1mo.
    #[arg(long)]
    expires_in: Option<String>,
    /// A label (default "default").
    #[arg(long)]
    name: Option<String>,
    /// A parent key's id: charges also count against the parent.
    #[arg(long)]
    parent: Option<i64>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("ceiling").required(true).args(["cents", "remove"])))]
struct SetBudgetArgs {
    /// The account.
    #[arg(long)]
    account: String,
    /// The ceiling in cents.
    #[arg(long, allow_negative_numbers = true)]
    cents: Option<f64>,
    /// When the ceiling resets (default: never, a lifetime ceiling).
    #[arg(long, value_enum, requires = "cents")]
    period: Option<PeriodArg>,
    /// Remove the account's ceiling.
    #[arg(long, conflicts_with = "cents")]
    remove: bool,
}

#[derive(Args, Debug)]
struct TopArgs {
    /// The window ending now.
    #[arg(long, value_enum, default_value = "day")]
    period: WindowArg,
    /// How many rows.
    #[arg(long, default_value_t = 10)]
    limit: u32,
    /// Group by key or by account.
    #[arg(long, value_enum, default_value = "key")]
    by: ByArg,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// Earliest instant included (RFC 3339, e.g. 2026-11-01T00:00:00Z).
    #[arg(long)]
    from: String,
    /// First instant excluded (RFC 3339).
    #[arg(long)]
    to: String,
    /// JSON lines, CSV (with a header row), Stripe meter events or OpenMeter
    /// CloudEvents (both as JSON lines, one event per ledger row).
    #[arg(long, value_enum, default_value = "jsonl")]
    format: FormatArg,
    /// The event name of the stripe and openmeter formats (Stripe's `event_name`,
    /// the CloudEvents `type`).
    #[arg(long, default_value = "keyleash_spend")]
    event_name: String,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// A progress bar on stderr: auto shows it when stderr is a terminal.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressArg,
    /// Mixed into every record id: give each database its own when several export
    /// into one place under the same table name.
    #[arg(long)]
    namespace: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum PeriodArg {
    Day,
    Week,
    Month,
}

impl PeriodArg {
    fn as_str(self) -> &'static str {
        match self {
            PeriodArg::Day => "day",
            PeriodArg::Week => "week",
            PeriodArg::Month => "month",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum WindowArg {
    Day,
    Week,
    Month,
    All,
}

impl WindowArg {
    fn as_str(self) -> &'static str {
        match self {
            WindowArg::Day => "day",
            WindowArg::Week => "week",
            WindowArg::Month => "month",
            WindowArg::All => "all",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ByArg {
    Key,
    Account,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ProgressArg {
    Auto,
    Always,
    Never,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FormatArg {
    Jsonl,
    Csv,
    Stripe,
    Openmeter,
}

impl FormatArg {
    fn format(self, event_name: &str) -> output::Format {
        match self {
            FormatArg::Jsonl => output::Format::Jsonl,
            FormatArg::Csv => output::Format::Csv,
            FormatArg::Stripe => output::Format::Stripe(event_name.to_string()),
            FormatArg::Openmeter => output::Format::OpenMeter(event_name.to_string()),
        }
    }
}

/// Runs the command line `args` (the first item is the program's name, as in
/// `std::env::args_os`) to its end and returns the exit status: 0, 1 for a failed
/// command, 2 for bad arguments. Prints to the process's stdout and stderr. Builds
/// its own Tokio runtime, so it must not be called from inside one (a binding
/// calls it from the thread of its host language). `watch` ends on Ctrl-C with
/// status 0: it puts SIGINT back to its default action first (once per process),
/// so a handler the host installed (Node's) no longer runs on Ctrl-C.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let secrets = redact::Secrets::of(&args);
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return output::clap_exit(&e, &secrets),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Failure::new("unavailable", format!("no async runtime: {e}")).exit(&secrets)
        }
    };
    let status = match runtime.block_on(execute(cli)) {
        Ok(()) => 0,
        Err(failure) => failure.exit(&secrets),
    };
    // An export stream's reading task may still hold a connection: do not wait.
    runtime.shutdown_background();
    status
}

async fn execute(cli: Cli) -> Result<(), Failure> {
    let options = Options {
        table_name: cli.table.clone(),
        pool_size: Some(2),
        ..Options::default()
    };
    let mut out = Out::stdout(cli.json);
    // Arguments are checked before connecting: a typo never waits for a database.
    let command = cli.command;
    let parsed = Parsed::of(&command)?;
    let kl = KeyLeash::connect(&cli.url, options).await?;
    match command {
        Command::Migrate => {
            kl.migrate().await?;
            out.migrated(&cli.table)?;
        }
        Command::Create(a) => {
            let created = kl
                .create(CreateOptions {
                    account_id: a.account.unwrap_or_default(),
                    scopes: a.scopes,
                    budget_cents: a.budget_cents,
                    budget_period: a.budget_period.map(|p| p.as_str().to_string()),
                    expires_in: a.expires_in,
                    name: a.name,
                    parent_id: a.parent,
                    ..CreateOptions::default()
                })
                .await?;
            out.created(&created)?;
        }
        Command::List { account } => out.keys(&kl.list(&account).await?)?,
        Command::Show { id } => match kl.get(id).await? {
            Some(details) => out.details(&details)?,
            None => return Err(Failure::not_found(format!("no key has id {id}"))),
        },
        Command::Revoke { id, account } => {
            if !kl.revoke(id, account.as_deref()).await? {
                let whose = account.map_or(String::new(), |a| format!(" of account {a}"));
                return Err(Failure::not_found(format!("no live key {id}{whose}")));
            }
            out.revoked(id)?;
        }
        Command::SetBudget(a) => {
            let period = a.period.map(PeriodArg::as_str);
            kl.set_account_budget(&a.account, a.cents, period).await?;
            out.ceiling(&a.account, a.cents, period)?;
        }
        Command::Usage { id, .. } => out.usage(&kl.usage(id, parsed.range).await?)?,
        Command::Top(t) => {
            let range = UsageRange::trailing(t.period.as_str(), kl.clock().now())?;
            out.top(&kl.top_spenders(by(t.by), range, t.limit).await?)?;
        }
        Command::Watch { top, count, .. } => {
            // Ctrl-C ends the loop between refreshes (or during one): status 0.
            sigint_to_default();
            let mut stop = std::pin::pin!(interrupted());
            let mut shown = 0;
            loop {
                let now = kl.clock().now();
                let range = UsageRange::trailing(top.period.as_str(), now)?;
                let rows = tokio::select! {
                    rows = kl.top_spenders(by(top.by), range, top.limit) => rows?,
                    _ = &mut stop => break,
                };
                out.watch(&rows, top.period.as_str(), now)?;
                shown += 1;
                if count.is_some_and(|c| shown >= c) {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(parsed.interval) => {}
                    _ = &mut stop => break,
                }
            }
        }
        Command::Export(a) => export(&kl, &a, parsed.range).await?,
    }
    out.flush()
}

/// The arguments that need more than clap to check, checked before connecting.
struct Parsed {
    range: UsageRange,
    interval: Duration,
}

impl Parsed {
    fn of(command: &Command) -> Result<Self, Failure> {
        let time = |field: &str, v: &Option<String>| {
            v.as_deref()
                .map(|v| keyleash::parse_time(field, v))
                .transpose()
        };
        let mut parsed = Parsed {
            range: UsageRange::default(),
            interval: Duration::from_secs(2),
        };
        match command {
            Command::Usage { from, to, .. } => {
                parsed.range = UsageRange {
                    from: time("--from", from)?,
                    to: time("--to", to)?,
                };
            }
            Command::Export(a) => {
                let name = &a.event_name;
                if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                    return Err(Failure::new(
                        "invalid_argument",
                        "--event-name must be 1 to 100 characters without control characters",
                    )
                    .status(2));
                }
                parsed.range = UsageRange {
                    from: Some(keyleash::parse_time("--from", &a.from)?),
                    to: Some(keyleash::parse_time("--to", &a.to)?),
                };
            }
            Command::Watch { interval, .. } => {
                let d = keyleash::period::parse_duration(interval)?;
                parsed.interval = d
                    .to_std()
                    .ok()
                    .filter(|d| *d >= Duration::from_secs(1))
                    .ok_or_else(|| {
                        Failure::new("invalid_duration", "--interval must be at least 1s").status(2)
                    })?;
            }
            _ => {}
        }
        Ok(parsed)
    }
}

/// Puts SIGINT back to its default action, once per process, before Tokio installs
/// its handler for `watch`.
///
/// Tokio's handler (signal-hook's) first calls the handler it found. Node installs
/// one at startup that restores the terminal and re-raises the signal: called from
/// inside the chained handler, where SIGINT is blocked, the raise is delivered as
/// soon as the handler returns, runs the same chain again, and so on forever, on
/// the thread that happened to take the signal. That is the thread blocked in
/// `runCli`, whose loop never runs again (`npx keyleash watch` spun at 88% CPU and
/// ignored Ctrl-C). With the default action found instead, the chain is Tokio's
/// alone. Python's entry point (`keyleash/cli.py`) sets the default too, and the
/// binary starts with it, so this changes nothing there.
fn sigint_to_default() {
    #[cfg(unix)]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: signal(2) with SIG_DFL installs no code of ours; it only
            // drops the host's handler, which nothing in this process waits on
            // while `watch` runs.
            unsafe {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
            }
        });
    }
}

/// Resolves at the first Ctrl-C (SIGINT), its handler installed by this call,
/// before the first refresh is shown: an `async` `ctrl_c()` installs it only when
/// first polled, which a `select!` whose other branch is ready at once skips, and
/// a signal sent then took the default action (the Node test of `watch` saw the
/// process end by SIGINT, not with status 0, once in many runs).
fn interrupted() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let installed = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut signal) = installed {
            signal.recv().await;
            return;
        }
        // Elsewhere, or where the handler could not be installed here.
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn by(b: ByArg) -> SpendBy {
    match b {
        ByArg::Key => SpendBy::Key,
        ByArg::Account => SpendBy::Account,
    }
}

/// Streams the window to the output, record by record, with a progress bar on
/// stderr when `--progress` says so (by default when stderr is a terminal).
async fn export(kl: &KeyLeash, a: &ExportArgs, range: UsageRange) -> Result<(), Failure> {
    let sink: Box<dyn Write> =
        match &a.out {
            Some(path) => Box::new(std::fs::File::create(path).map_err(|e| {
                Failure::new("io", format!("cannot create {}: {e}", path.display()))
            })?),
            None => Box::new(std::io::stdout().lock()),
        };
    let mut w = output::Records::new(sink, a.format.format(&a.event_name))?;
    let show = match a.progress {
        ProgressArg::Auto => std::io::stderr().is_terminal(),
        ProgressArg::Always => true,
        ProgressArg::Never => false,
    };
    // Records on the terminal that shows the bar: each is written (and flushed)
    // on a line of its own, with the bar erased first and drawn again below it.
    let shared = show && a.out.is_none() && std::io::stdout().is_terminal();
    let mut bar = if show {
        let total = kl.count_ledger(range).await?;
        if shared {
            w.flush()?;
        }
        Some(output::Progress::new(total, shared))
    } else {
        None
    };
    let mut records = kl.export_ledger(range, a.namespace.as_deref());
    while let Some(record) = records.next().await {
        let record = record?;
        if let Some(bar) = &mut bar {
            bar.clear();
        }
        w.write(&record)?;
        if shared {
            w.flush()?;
        }
        if let Some(bar) = &mut bar {
            bar.step();
        }
    }
    w.finish()?;
    if let Some(bar) = bar {
        bar.done();
    }
    Ok(())
}
