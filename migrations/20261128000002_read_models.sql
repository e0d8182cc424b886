-- Read models of companies and users. Each table has one writer, the projector of the same
-- name in `projections/src/`, and is read only through that module's query functions.
-- Read tables carry no foreign keys: projectors apply the log in commit order, each at its
-- own pace, and a rebuild fills them from scratch; the log is the source of integrity.

-- Projector `companies`: tenants and their API keys (only the SHA-256 of each secret).
CREATE TABLE companies (
    company_id    uuid        PRIMARY KEY,
    name          text        NOT NULL,
    owner_user_id uuid        NOT NULL,
    created_at    timestamptz NOT NULL
);

CREATE TABLE api_keys (
    key_id      uuid        PRIMARY KEY,
    company_id  uuid        NOT NULL,
    secret_hash bytea       NOT NULL,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_company ON api_keys (company_id);

-- Projector `user_profiles`: what `GET /v4/user…` answers. Listing pages through a
-- company's users oldest first, hence the (company_id, created_at, user_id) index. The slug
-- index serves booking-page lookups; uniqueness itself is a claim, not this index.
CREATE TABLE user_profiles (
    user_id                 uuid        PRIMARY KEY,
    company_id              uuid        NOT NULL,
    email                   text        NOT NULL,
    given_name              text        NOT NULL,
    family_name             text        NOT NULL,
    slug                    text        NOT NULL,
    timezone                text        NOT NULL,
    user_type               text        NOT NULL,
    is_owner                boolean     NOT NULL,
    default_availability_id uuid,
    default_meeting_type_id uuid,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL
);
CREATE INDEX user_profiles_company ON user_profiles (company_id, created_at, user_id);
CREATE INDEX user_profiles_slug ON user_profiles (slug);

-- Projector `availabilities`. `own_timezone` is NULL for an availability that follows its
-- user's zone; queries resolve the zone in effect against `user_profiles`.
CREATE TABLE availabilities (
    availability_id uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL,
    company_id      uuid        NOT NULL,
    name            text        NOT NULL,
    own_timezone    text,
    schedule        jsonb       NOT NULL,
    is_default      boolean     NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX availabilities_user ON availabilities (user_id);

-- Projector `meeting_types`.
CREATE TABLE meeting_types (
    meeting_type_id       uuid        PRIMARY KEY,
    user_id               uuid        NOT NULL,
    company_id            uuid        NOT NULL,
    availability_id       uuid        NOT NULL,
    name                  text        NOT NULL,
    slug                  text        NOT NULL,
    duration_minutes      integer     NOT NULL,
    slot_interval_minutes integer     NOT NULL,
    buffer_before_minutes integer     NOT NULL,
    buffer_after_minutes  integer     NOT NULL,
    minimum_notice_minutes integer    NOT NULL,
    horizon_days          integer     NOT NULL,
    enabled               boolean     NOT NULL,
    is_default            boolean     NOT NULL,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);
CREATE INDEX meeting_types_user ON meeting_types (user_id);
