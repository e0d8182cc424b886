//! Connections. Migrations and rebuilds run as the database owner
//! (`KAIROS_MIGRATE_DATABASE_URL`, else `DATABASE_URL`); everything else runs as the
//! `kairos_service` role, which may only read the log and append to it through
//! `append_to_log` (migrations …0001 and …20261202000002), switched to by `SET ROLE` as each
//! pooled connection opens. `DATABASE_URL` may log in as the owner (who may `SET ROLE` to it)
//! or, better, as a login role that is only a member of `kairos_service`
//! ([`admit_service_login`]).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};

pub const SERVICE_ROLE: &str = "kairos_service";

/// A pooled connection idle this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// The migration that lets the service read which migrations are applied.
const LEAST_PRIVILEGE_MIGRATION: i64 = 20261202000002;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Applies pending migrations as the owner.
pub async fn migrate(database_url: &str) -> Result<(), sqlx::Error> {
    let pool = owner_pool(database_url, 1).await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}

/// How the role that serves (`DATABASE_URL`'s login) came to be able to act as the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLogin {
    /// The role migrations ran as.
    pub owner: String,
    /// The role `DATABASE_URL` logs in as.
    pub login: String,
    pub admission: Admission,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The login did not exist; it was created (LOGIN, no password, no other right) as a
    /// member of `kairos_service`. Give it a password or another way in to use it remotely.
    Created,
    /// The existing login was made a member of `kairos_service`.
    Granted,
    /// It was a member already.
    AlreadyMember,
    /// A superuser needs no membership to `SET ROLE`.
    Superuser,
}

/// Makes the role `service_url` logs in as able to serve: a member of `kairos_service`,
/// created as a bare LOGIN role if it does not exist yet. Runs as the owner (`owner_url`),
/// after [`migrate`], which created the service role and took its membership from the
/// migrating owner (migration …20261202000002): only the role that serves is a member.
/// When both URLs log in as the same role (the owner serves, as before), that role is
/// granted the membership it needs to `SET ROLE`, unless it is a superuser.
pub async fn admit_service_login(
    owner_url: &str,
    service_url: &str,
) -> Result<ServiceLogin, sqlx::Error> {
    let login = options(service_url)?.get_username().to_string();
    let mut owner = PgConnection::connect_with(&options(owner_url)?).await?;
    let owner_name: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut owner)
        .await?;
    let row = sqlx::query(
        "SELECT r.rolsuper, EXISTS (SELECT 1 FROM pg_auth_members m \
                WHERE m.roleid = $2::regrole AND m.member = r.oid) AS member \
         FROM pg_roles r WHERE r.rolname = $1",
    )
    .bind(&login)
    .bind(SERVICE_ROLE)
    .fetch_optional(&mut owner)
    .await?;
    let admission = match row {
        Some(row) if row.try_get::<bool, _>("rolsuper")? => Admission::Superuser,
        Some(row) if row.try_get::<bool, _>("member")? => Admission::AlreadyMember,
        Some(_) => {
            grant_service_role(&mut owner, &login).await?;
            Admission::Granted
        }
        None => {
            // Two processes may create it at once (tests do): whoever loses finds it there.
            let created = owner
                .execute(
                    format!(
                        "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION",
                        quote_identifier(&login)
                    )
                    .as_str(),
                )
                .await;
            match created {
                Ok(_) => {}
                Err(sqlx::Error::Database(e))
                    if matches!(e.code().as_deref(), Some("42710" | "23505")) => {}
                Err(e) => return Err(e),
            }
            grant_service_role(&mut owner, &login).await?;
            Admission::Created
        }
    };
    owner.close().await?;
    Ok(ServiceLogin {
        owner: owner_name,
        login,
        admission,
    })
}

async fn grant_service_role(owner: &mut PgConnection, login: &str) -> Result<(), sqlx::Error> {
    let granted = owner
        .execute(format!("GRANT {SERVICE_ROLE} TO {}", quote_identifier(login)).as_str())
        .await;
    match granted {
        // A concurrent grant of the same membership got there first.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// `name` as an SQL identifier (roles cannot be bound as parameters).
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether `database_url` logs in as the role that owns the schema (the migrations table;
/// on a fresh database, the database itself), or a superuser: `kairos serve` migrates only
/// then, and leaves the migrations of a database it serves as the service to `kairos
/// migrate`. (Not "may CREATE in public": on clusters older than PostgreSQL 15 everyone may,
/// and the tables must not end up owned by the service's login.)
pub async fn owns_schema(database_url: &str) -> Result<bool, sqlx::Error> {
    let mut connection = PgConnection::connect_with(&options(database_url)?).await?;
    let owns = sqlx::query_scalar(
        "SELECT COALESCE(\
            (SELECT pg_has_role(relowner, 'USAGE') FROM pg_class \
             WHERE oid = to_regclass('public._sqlx_migrations')), \
            (SELECT pg_has_role(datdba, 'USAGE') FROM pg_database \
             WHERE datname = current_database()))",
    )
    .fetch_one(&mut connection)
    .await?;
    connection.close().await?;
    Ok(owns)
}

/// The versions of this binary's migrations that `pool`'s database has not applied (read as
/// the service, which may SELECT the migrations table).
pub async fn pending_migrations(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(applied) => applied,
            // No migrations table: nothing is applied.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            // The service may not read it: the migration granting that is not applied, nor
            // (migrations apply in order) any after it.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {
                return Ok(MIGRATOR
                    .iter()
                    .map(|m| m.version)
                    .filter(|version| *version >= LEAST_PRIVILEGE_MIGRATION)
                    .collect());
            }
            Err(e) => return Err(e),
        };
    Ok(MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|version| !applied.contains(version))
        .collect())
}

/// A pool of owner connections: migrations, rebuild swaps, and tests that tamper.
pub async fn owner_pool(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options(database_url)?)
        .await
}

/// A pool of service-role connections. `statement_timeout` bounds every statement of the
/// request path, so a stuck query answers 503 instead of hanging a client.
pub async fn service_pool(
    database_url: &str,
    max_connections: u32,
    statement_timeout: Option<Duration>,
) -> Result<PgPool, sqlx::Error> {
    pool_with(database_url, max_connections, statement_timeout, false).await
}

/// The projectors' pool. Their commits do not wait for the disk: read models are derived,
/// rows commit together with their checkpoint, and a crash can only lose a tail of projector
/// commits that is then applied again. (Appends, on the request pool, stay synchronous.)
pub async fn projector_pool(
    database_url: &str,
    max_connections: u32,
) -> Result<PgPool, sqlx::Error> {
    pool_with(database_url, max_connections, None, true).await
}

async fn pool_with(
    database_url: &str,
    max_connections: u32,
    statement_timeout: Option<Duration>,
    asynchronous_commit: bool,
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings every connection it hands out by default: a full round trip before
        // each append and each projector batch. A connection in steady use needs none (a
        // dead one fails its next statement like any other database error); one that sat
        // idle, perhaps across a database restart, is still checked before use.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |connection, _meta| {
            Box::pin(async move {
                connection
                    .execute(format!("SET ROLE {SERVICE_ROLE}").as_str())
                    .await?;
                if asynchronous_commit {
                    connection.execute("SET synchronous_commit = off").await?;
                }
                if let Some(timeout) = statement_timeout {
                    connection
                        .execute(
                            format!("SET statement_timeout = {}", timeout.as_millis()).as_str(),
                        )
                        .await?;
                }
                Ok(())
            })
        })
        .connect_with(options(database_url)?)
        .await
}

fn options(database_url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(PgConnectOptions::from_str(database_url)?.application_name("kairos"))
}
