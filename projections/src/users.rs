//! Projector `users`: the read models of the User aggregate — profiles, availabilities and
//! meeting types — applied in one transaction per batch, because they are built from the same
//! events and read together. Each table is still written only by its own module, which also
//! holds the queries that read it: [`crate::user_profiles`], [`crate::availabilities`],
//! [`crate::meeting_types`].

use async_trait::async_trait;
use sqlx::PgConnection;

use crate::log::LogEvent;
use crate::runtime::{ProjectionError, Projector};
use crate::{availabilities, meeting_types, user_profiles};

pub const NAME: &str = "users";

pub struct UsersProjector;

#[async_trait]
impl Projector for UsersProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["user_profiles", "availabilities", "meeting_types"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[LogEvent],
    ) -> Result<(), ProjectionError> {
        user_profiles::apply(&mut *tx, events).await?;
        availabilities::apply(&mut *tx, events).await?;
        meeting_types::apply(&mut *tx, events).await
    }
}
