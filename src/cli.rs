//! The `kairos` command line (api.md section 10). Every subcommand reads its configuration
//! from the environment (`DATABASE_URL`, …) and prints `--help`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use projections::clock::SystemClock;
use projections::runtime::{AppendSignal, Progress, RuntimeConfig};
use uuid::Uuid;

use crate::commands::CommandBus;
use crate::config::Config;
use crate::event_store::EventStore;
use crate::provisioning::{self, NewCompany};
use crate::server::{Kairos, Options};
use crate::{db, http, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "kairos",
    version,
    about = "Kairos: event-sourced scheduling speaking the meetergo Platform API v4"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations (unless --no-migrate, or DATABASE_URL cannot migrate and
    /// KAIROS_MIGRATE_DATABASE_URL is unset), start the projectors and serve HTTP on KAIROS_BIND.
    Serve {
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply migrations as the owner (KAIROS_MIGRATE_DATABASE_URL, else DATABASE_URL), make
    /// DATABASE_URL's login a member of the service role (creating it if missing), and exit.
    Migrate,
    /// Companies (tenants).
    #[command(subcommand)]
    Company(CompanyCommand),
    /// API keys of a company.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// The projectors that build the read models.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// The event history.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Create a demo company on an empty installation and print a ready API key (used by
    /// `make run`). On later runs, print the saved key again, or issue a fresh one.
    Demo {
        /// Where the demo key is kept between runs.
        #[arg(long, default_value = ".data/demo-key.json")]
        key_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CompanyCommand {
    /// Create a company with its owner user and a first API key.
    Create(CreateCompanyArgs),
}

#[derive(Debug, Args)]
pub struct CreateCompanyArgs {
    #[arg(long)]
    name: String,
    #[arg(long)]
    owner_email: String,
    #[arg(long)]
    owner_given_name: String,
    #[arg(long)]
    owner_family_name: String,
    /// IANA time zone of the owner, e.g. Europe/Berlin.
    #[arg(long)]
    timezone: String,
    /// Days until the first key expires (1–90).
    #[arg(long, default_value_t = 30)]
    key_days: i64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Issue a new API key for a company.
    Create {
        #[arg(long)]
        company: Uuid,
        /// Days until the key expires (1–90).
        #[arg(long, default_value_t = 30)]
        days: i64,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key; it stops working at once.
    Revoke { key_id: Uuid },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every aggregate's hash chain; exit 1 naming the first event that does not
    /// match, 2 when it cannot check.
    Verify {
        /// Only the aggregates of this company.
        #[arg(long)]
        company: Option<Uuid>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Position, lag, state and last error of each projector.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Apply the quarantined aggregates of a projector (or all) again, after their cause was
    /// fixed: the leading server does it (or this process, when none leads); exits 1 if
    /// some stay quarantined.
    Retry {
        /// The projector (see `status`); every projector when left out.
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild read models from position 0 into shadow tables while the server keeps serving
    /// the live ones, then swap them in one transaction.
    Rebuild {
        /// The projector to rebuild (see `status`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Rebuild every read model, swapped together.
        #[arg(long)]
        all: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    /// The exit status when the command fails. `audit verify` gives 1 the meaning "a broken
    /// event" (section 10), so every other failure of it, configuration included, exits 2,
    /// as `diff` does: 0 same, 1 different, 2 trouble (clap's usage errors exit 2 as well).
    /// Every other command exits 1.
    pub fn failure_status(&self) -> u8 {
        match self.command {
            Command::Audit(AuditCommand::Verify { .. }) => 2,
            _ => 1,
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    match cli.command {
        Command::Serve { no_migrate } => serve(config, no_migrate).await,
        Command::Migrate => {
            let login = migrate(&config).await?;
            println!("migrations applied as {}", login.owner);
            println!("{}", describe_login(&login));
            Ok(())
        }
        Command::Company(CompanyCommand::Create(args)) => create_company(&config, args).await,
        Command::ApiKey(ApiKeyCommand::Create {
            company,
            days,
            json,
        }) => {
            let bus = cli_bus(&config).await?;
            let key = provisioning::issue_key(&bus, company, days).await?;
            if json {
                println!("{}", serde_json::to_string(&key)?);
            } else {
                println!(
                    "API key {} of company {} (expires {}):\n{}",
                    key.api_key_id, key.company_id, key.expires_at, key.api_key
                );
            }
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::Revoke { key_id }) => {
            let bus = cli_bus(&config).await?;
            provisioning::revoke_key(&bus, key_id).await?;
            println!("API key {key_id} revoked");
            Ok(())
        }
        Command::Projections(ProjectionsCommand::Status { json }) => {
            projections_status(&config, json).await
        }
        Command::Projections(ProjectionsCommand::Retry { name, json }) => {
            retry_quarantined(&config, name.as_deref(), json).await
        }
        Command::Projections(ProjectionsCommand::Rebuild { name, all, json }) => {
            rebuild(&config, name.as_deref(), all, json).await
        }
        Command::Audit(AuditCommand::Verify { company, json }) => {
            audit_verify(&config, company, json).await
        }
        Command::Demo { key_file } => demo(&config, &key_file).await,
    }
}

/// Exit status 0: every hash matches; 1: the first broken event is named; an error (the log
/// could not be read, say) exits 2 ([`Cli::failure_status`]): nothing is known either way, and
/// a monitor must take that neither for tampering nor for a pass.
async fn audit_verify(config: &Config, company: Option<Uuid>, json: bool) -> anyhow::Result<()> {
    let verified = async {
        let pool = db::service_pool(&config.database_url, 1, None).await?;
        crate::audit::verify_chains(&pool, company).await
    };
    let report = verified.await.context("the log could not be verified")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    match &report.first_broken {
        None => {
            if !json {
                println!(
                    "ok: {} events in {} aggregates, every hash matches",
                    report.events_checked, report.aggregates_checked
                );
            }
            Ok(())
        }
        Some(broken) => {
            if !json {
                println!(
                    "BROKEN: event {} (position {}, {} {} sequence {}, {}): {}",
                    broken.event_id,
                    broken.position,
                    broken.aggregate_type,
                    broken.aggregate_id,
                    broken.sequence,
                    broken.event_type,
                    broken.reason
                );
            }
            std::process::exit(1);
        }
    }
}

/// Migrates as the owner, then lets `DATABASE_URL`'s login act as the service.
async fn migrate(config: &Config) -> anyhow::Result<db::ServiceLogin> {
    // A login that merely serves could "apply" an up-to-date schema as a no-op and then report
    // itself as the owner: refuse it by name instead.
    ensure_owner(config, "migrations").await?;
    db::migrate(config.owner_url()).await.context(
        "migrating (as KAIROS_MIGRATE_DATABASE_URL's login, else DATABASE_URL's: the owner of the database)",
    )?;
    db::admit_service_login(config.owner_url(), &config.database_url)
        .await
        .context("making DATABASE_URL's login a member of kairos_service")
}

/// Refuses owner-only `work` when the owner's URL logs in as a role that does not own the
/// database (a service login, say), naming the variable to set.
async fn ensure_owner(config: &Config, work: &str) -> anyhow::Result<()> {
    let owns = db::owns_schema(config.owner_url())
        .await
        .context("connecting with the owner's URL")?;
    if !owns {
        let variable = if config.migrate_database_url.is_some() {
            "KAIROS_MIGRATE_DATABASE_URL"
        } else {
            "DATABASE_URL"
        };
        bail!(
            "{variable} logs in as a role that does not own the database: {work} run with the owner's URL, \
             in KAIROS_MIGRATE_DATABASE_URL (or DATABASE_URL)"
        );
    }
    Ok(())
}

fn describe_login(login: &db::ServiceLogin) -> String {
    let how = match login.admission {
        db::Admission::Created => {
            "created now, a member of kairos_service only; give it a password to log in remotely"
        }
        db::Admission::Granted => "now a member of kairos_service",
        db::Admission::AlreadyMember => "a member of kairos_service",
        db::Admission::Superuser => "a superuser, which may SET ROLE kairos_service",
    };
    if login.login == login.owner {
        format!(
            "DATABASE_URL logs in as the owner, {} ({how}); a login of its own for serving is safer",
            login.login
        )
    } else {
        format!("DATABASE_URL logs in as {} ({how})", login.login)
    }
}

async fn serve(config: Config, no_migrate: bool) -> anyhow::Result<()> {
    let keyring = config.keyring()?;
    if !no_migrate {
        // A login that only serves cannot migrate: its database is migrated by `kairos
        // migrate` with the owner's URL, and serving checks below that it was.
        let may_migrate = config.migrate_database_url.is_some()
            || db::owns_schema(&config.database_url)
                .await
                .context("connecting to DATABASE_URL")?;
        if may_migrate {
            let login = migrate(&config).await?;
            tracing::info!(owner = %login.owner, "migrations applied; {}", describe_login(&login));
        } else {
            tracing::info!(
                "DATABASE_URL's login does not own the database: migrations are left to `kairos migrate` with the owner's URL"
            );
        }
    }
    ensure_migrated(&config).await?;
    let kairos = Kairos::start(Options {
        database_url: config.database_url.clone(),
        keyring,
        clock: Arc::new(SystemClock),
        public_url: config.public_url(),
        pool_size: config.pool_size,
        rate_limit_per_minute: config.rate_limit_per_minute,
        read_your_writes_timeout: config.read_your_writes_timeout,
        runtime: RuntimeConfig::default(),
        windows_cache_bytes: config.windows_cache_bytes,
        auth_failures_per_minute: config.auth_failures_per_minute,
    })
    .await
    .context("starting")?;
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    let open_files = http::serve::raise_open_file_limit();
    let limits = http::ConnectionLimits {
        max_connections: http::serve::cap_to_open_files(
            config.connections.max_connections,
            open_files,
            config.pool_size,
        ),
        ..config.connections
    };
    if limits.max_connections < config.connections.max_connections {
        tracing::warn!(
            wanted = config.connections.max_connections,
            open_file_limit = open_files,
            max_connections = limits.max_connections,
            "fewer connections than KAIROS_MAX_CONNECTIONS fit in the open-file limit"
        );
    }
    tracing::info!(
        address = %listener.local_addr()?,
        max_connections = limits.max_connections,
        header_read_timeout_secs = limits.header_read_timeout.as_secs(),
        "serving"
    );
    http::run(listener, kairos.router(), limits, shutdown_signal()).await?;
    tracing::info!("stopping projectors");
    kairos.stop().await;
    Ok(())
}

/// Refuses to serve a database that lacks migrations this binary knows (a service login
/// cannot apply them; run `kairos migrate` with the owner's URL first).
async fn ensure_migrated(config: &Config) -> anyhow::Result<()> {
    let pool = db::service_pool(&config.database_url, 1, None)
        .await
        .context("connecting to DATABASE_URL as kairos_service")?;
    let pending = db::pending_migrations(&pool).await;
    let login: Result<String, _> = sqlx::query_scalar("SELECT session_user::text")
        .fetch_one(&pool)
        .await;
    pool.close().await;
    let pending = pending.context("reading the applied migrations")?;
    if let Ok(login) = login {
        tracing::info!(%login, "serving as {login}, acting as {}", db::SERVICE_ROLE);
    }
    if !pending.is_empty() {
        bail!(
            "the database lacks migrations {pending:?}: run `kairos migrate` with the owner's URL in \
             KAIROS_MIGRATE_DATABASE_URL (or DATABASE_URL) first"
        );
    }
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

/// A command bus for one-shot CLI commands: no projectors run here, so commands catch the
/// read models up themselves (`provisioning`).
async fn cli_bus(config: &Config) -> anyhow::Result<CommandBus> {
    let keyring = config.keyring()?;
    let pool = db::service_pool(&config.database_url, 4, None)
        .await
        .context("connecting to DATABASE_URL")?;
    Ok(CommandBus::new(
        EventStore::new(pool.clone(), keyring),
        Arc::new(SystemClock),
        Progress::new(&[]),
        AppendSignal::direct(pool.clone()),
        Duration::from_secs(5),
    ))
}

async fn create_company(config: &Config, args: CreateCompanyArgs) -> anyhow::Result<()> {
    let bus = cli_bus(config).await?;
    let created = provisioning::create_company(
        &bus,
        NewCompany {
            name: args.name,
            owner_email: args.owner_email,
            owner_given_name: args.owner_given_name,
            owner_family_name: args.owner_family_name,
            timezone: args.timezone,
            key_days: args.key_days,
        },
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string(&created)?);
    } else {
        println!(
            "company {}\nowner user {}\nAPI key {} (expires {}):\n{}",
            created.company_id,
            created.owner_user_id,
            created.api_key_id,
            created.expires_at,
            created.api_key
        );
    }
    Ok(())
}

async fn projections_status(config: &Config, json: bool) -> anyhow::Result<()> {
    let pool = db::service_pool(&config.database_url, 1, None).await?;
    let statuses = projections::runtime::status(&pool).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
        return Ok(());
    }
    println!(
        "{:<18} {:>10} {:>8} {:>10} {:<9} {:<8} {:>11} last error",
        "projector", "position", "lag", "applied", "state", "leader", "quarantined"
    );
    for s in &statuses {
        println!(
            "{:<18} {:>10} {:>8} {:>10} {:<9} {:<8} {:>11} {}",
            s.name,
            s.position,
            s.lag,
            s.events_applied,
            s.state,
            s.leader_pid
                .map(|pid| format!("pid {pid}"))
                .unwrap_or_else(|| "-".into()),
            s.quarantined.len(),
            s.last_error.clone().unwrap_or_default()
        );
    }
    let quarantined: Vec<_> = statuses.iter().flat_map(|s| &s.quarantined).collect();
    if !quarantined.is_empty() {
        println!(
            "\nquarantined aggregates (their reads answer 503; fix the cause, then `kairos projections retry`):"
        );
        print_quarantined(&quarantined);
    }
    Ok(())
}

fn print_quarantined(rows: &[&projections::quarantine::Quarantined]) {
    for q in rows {
        println!(
            "  {} {} {} at position {} ({}){}: {}",
            q.projector,
            q.aggregate_type,
            q.aggregate_id,
            q.position,
            q.event_type,
            if q.retry_requested {
                ", retry requested"
            } else {
                ""
            },
            q.reason
        );
    }
}

/// `kairos projections retry`: asks the leaders to apply the quarantined aggregates again,
/// applies them here where no server leads, and waits (up to 30 s) for the outcome.
async fn retry_quarantined(config: &Config, name: Option<&str>, json: bool) -> anyhow::Result<()> {
    let keyring = config.keyring()?;
    let pool = db::service_pool(&config.database_url, 3, None).await?;
    let every = projections::all_projectors(Arc::new(SystemClock), &projections::Caches::unused());
    let chosen: Vec<_> = match name {
        None => every,
        Some(name) => {
            let known: Vec<&str> = every.iter().map(|p| p.name()).collect();
            if !known.contains(&name) {
                bail!("no projector named {name:?}; known: {}", known.join(", "));
            }
            every.into_iter().filter(|p| p.name() == name).collect()
        }
    };
    let names: Vec<&str> = chosen.iter().map(|p| p.name()).collect();
    let requested = {
        let mut connection = pool.acquire().await?;
        projections::quarantine::request_retry(&mut connection, &names).await?
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let remaining = loop {
        // Where no server leads a projector, its batch runs here (under its advisory lock).
        projections::runtime::catch_up(
            &pool,
            &keyring,
            &chosen,
            projections::log::LogPosition::START,
            std::time::Duration::from_secs(5),
        )
        .await?;
        let rows: Vec<_> = projections::quarantine::list(&pool)
            .await?
            .into_iter()
            .filter(|q| names.contains(&q.projector.as_str()))
            .collect();
        if rows.iter().all(|q| !q.retry_requested) || tokio::time::Instant::now() >= deadline {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "retried": requested,
                "quarantined": remaining,
            }))?
        );
    } else {
        println!(
            "retried {requested} quarantined aggregate(s); {} still quarantined",
            remaining.len()
        );
        print_quarantined(&remaining.iter().collect::<Vec<_>>());
    }
    if !remaining.is_empty() {
        bail!("{} aggregate(s) are still quarantined", remaining.len());
    }
    Ok(())
}

async fn rebuild(config: &Config, name: Option<&str>, all: bool, json: bool) -> anyhow::Result<()> {
    let keyring = config.keyring()?;
    // Swapping tables is DDL: the owner's work.
    ensure_owner(config, "rebuilds").await?;
    let owner = db::owner_pool(config.owner_url(), 6)
        .await
        .context("connecting as the owner (KAIROS_MIGRATE_DATABASE_URL, else DATABASE_URL)")?;
    // This process serves nothing: the cache the windows projector would invalidate is its own.
    let every = projections::all_projectors(Arc::new(SystemClock), &projections::Caches::unused());
    let chosen: Vec<_> = match (all, name) {
        (true, _) => every,
        (false, Some(name)) => {
            let known: Vec<&str> = every.iter().map(|p| p.name()).collect();
            if !known.contains(&name) {
                bail!("no projector named {name:?}; known: {}", known.join(", "));
            }
            every.into_iter().filter(|p| p.name() == name).collect()
        }
        (false, None) => bail!("name a projector or pass --all"),
    };
    let mut bar = RebuildBar::new();
    let report =
        projections::rebuild::rebuild(&owner, &keyring, &chosen, &Default::default(), &mut bar)
            .await;
    bar.finish();
    let report = report.context("rebuild failed")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "rebuilt {} ({} tables) from {} events in {:.2} s, {:.0} events/s; now at position {}",
            report.projectors.join(", "),
            report.tables.len(),
            report.events,
            report.seconds,
            report.events_per_second,
            report.position
        );
    }
    Ok(())
}

/// The rebuild's progress on stderr: a bar with events per second on a terminal, nothing
/// otherwise (the summary line says it all).
struct RebuildBar {
    bar: indicatif::ProgressBar,
}

impl RebuildBar {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(0),
            indicatif::ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg:9} [{bar:40}] {pos}/{len} events, {per_sec}, eta {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_message("replaying");
        Self { bar }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl projections::rebuild::RebuildProgress for RebuildBar {
    fn started(&mut self, total_events: u64) {
        self.bar.set_length(total_events);
    }

    fn advanced(&mut self, events: u64) {
        self.bar.inc(events);
    }

    fn swapping(&mut self) {
        self.bar.set_message("swapping");
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DemoKey {
    company_id: Uuid,
    api_key: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

async fn demo(config: &Config, key_file: &PathBuf) -> anyhow::Result<()> {
    let bus = cli_bus(config).await?;
    let saved: Option<DemoKey> = std::fs::read_to_string(key_file)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let existing = projections::companies::first_company_id(bus.pool()).await?;
    let now = chrono::Utc::now();
    let key = match (existing, saved) {
        (Some(company_id), Some(saved))
            if saved.company_id == company_id
                && saved.expires_at > now + chrono::Duration::hours(1) =>
        {
            saved
        }
        (Some(company_id), _) => {
            let issued = provisioning::issue_key(&bus, company_id, 30).await?;
            DemoKey {
                company_id,
                api_key: issued.api_key,
                expires_at: issued.expires_at,
            }
        }
        (None, _) => {
            let created = provisioning::create_company(
                &bus,
                NewCompany {
                    name: "Demo Company".into(),
                    owner_email: "owner@demo.example.com".into(),
                    owner_given_name: "Demo".into(),
                    owner_family_name: "Owner".into(),
                    timezone: "Europe/Berlin".into(),
                    key_days: 30,
                },
            )
            .await?;
            DemoKey {
                company_id: created.company_id,
                api_key: created.api_key,
                expires_at: created.expires_at,
            }
        }
    };
    if let Some(parent) = key_file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(key_file, serde_json::to_string_pretty(&key)?)
        .with_context(|| format!("writing {}", key_file.display()))?;
    let base = config.public_url();
    if !base.starts_with("http") {
        bail!("KAIROS_PUBLIC_URL must start with http:// or https://");
    }
    println!();
    println!(
        "  Demo company {} — API key (expires {}):",
        key.company_id,
        key.expires_at.format("%Y-%m-%d")
    );
    println!();
    println!("    {}", key.api_key);
    println!();
    println!("  Try it:");
    println!(
        "    curl -s -H 'Authorization: Bearer {}' {}/v4/user/me",
        key.api_key, base
    );
    println!();
    Ok(())
}
