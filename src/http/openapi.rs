//! `GET /openapi.json` (OpenAPI 3.1, generated from the handlers' annotations) and `GET /docs`,
//! a self-contained page that renders it: no CDN, so it works on a machine without internet.
//!
//! The document must tell the truth (`make fuzz` holds the server to it with schemathesis):
//! each handler's annotation states its own parameters, bodies, constraints and answers, and
//! [`document`] adds what every authenticated operation shares, from one place: the acting-user
//! header and the answers the edge, the extractors and the database can give anywhere
//! (400, 401, 404, 429, 503; 413 and 415 where a body is read).

use std::sync::LazyLock;

use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Kairos", description = "Self-hostable scheduling API speaking the meetergo Platform API v4 dialect."),
    paths(
        super::users::create_user,
        super::users::me,
        super::users::get_user,
        super::users::list_users,
        super::users::update_user,
        super::users::delete_user,
        super::windows::bookable_windows,
        super::audit::audit_events,
        super::audit::user_history,
        super::health::live,
        super::health::ready,
    ),
    components(schemas(
        super::error::ErrorBody,
        super::error::FieldErrorBody,
        TimeZone,
        Label,
        Email,
        UserSlug,
        MeetingTypeSlug,
        TimeFrom,
        TimeTo,
        Weekday,
        UserTypeName,
        FilterText,
        IdempotencyKey,
    )),
    modifiers(&ApiKeyAuth),
    tags(
        (name = "users", description = "Platform users (api.md section 2)"),
        (name = "bookable windows", description = "Bookable start times (api.md section 5)"),
        (name = "audit", description = "The event history (api.md section 7)"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ak_live:<key id>:<secret>")
                    .build(),
            ),
        );
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs))
}

async fn openapi_json() -> impl IntoResponse {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(document);
    axum::Json(&*DOCUMENT)
}

/// The OpenAPI document as served: the annotations, plus what every authenticated operation
/// shares.
pub fn document() -> Value {
    let mut document =
        serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    // A PATCH needs one of its four fields; any other member is ignored, so `minProperties`
    // alone would call `{"foo": 1}` valid.
    let update = &mut document["components"]["schemas"]["UpdateUserRequest"];
    update["minProperties"] = json!(1);
    update["anyOf"] =
        json!(["givenName", "familyName", "slug", "timezone"].map(|f| json!({"required": [f]})));
    if let Some(paths) = document["paths"].as_object_mut() {
        for operation in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.values_mut())
            .filter_map(Value::as_object_mut)
        {
            add_shared_answers(operation);
        }
    }
    document
}

/// The schema `TimeZone`: every IANA name chrono-tz knows, which is exactly what the server
/// accepts (api.md section 0: anything else is `400 Invalid timezone`).
pub struct TimeZone;

impl utoipa::PartialSchema for TimeZone {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("An IANA time zone name"))
            .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())))
            .examples([json!("Europe/Berlin")])
            .into()
    }
}

impl utoipa::ToSchema for TimeZone {
    fn name() -> std::borrow::Cow<'static, str> {
        "TimeZone".into()
    }
}

/// A string schema with the constraints the server's parser enforces, named so that the
/// handlers' annotations refer to it (`value_type = openapi::Label`).
macro_rules! string_schema {
    ($(#[doc = $doc:literal])+ $name:ident { $($setting:ident: $value:expr),* $(,)? }) => {
        $(#[doc = $doc])+
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(concat!($($doc),+).trim()))
                    $(.$setting($value))*
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
        }
    };
}

string_schema! {
    /// A person's name or a label: 1–100 characters once trimmed, at least one not white
    /// space, no control character.
    Label {
        min_length: Some(1),
        max_length: Some(100),
        pattern: Some(r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"),
    }
}

string_schema! {
    /// An email address with a dotted domain, at most 254 characters.
    Email {
        format: Some(SchemaFormat::KnownFormat(KnownFormat::Email)),
        max_length: Some(254),
        examples: [json!("john.smith@example.com")],
    }
}

string_schema! {
    /// A user slug: lowercase letters a-z and digits in runs joined by single hyphens, 5–64
    /// characters, unique across the installation.
    UserSlug {
        pattern: Some("^[a-z0-9]+(-[a-z0-9]+)*$"),
        min_length: Some(5),
        max_length: Some(64),
        examples: [json!("john-smith")],
    }
}

string_schema! {
    /// A meeting-type slug: lowercase letters a-z and digits in runs joined by single
    /// hyphens, at most 64 characters, unique per user.
    MeetingTypeSlug {
        pattern: Some("^[a-z0-9]+(-[a-z0-9]+)*$"),
        max_length: Some(64),
        examples: [json!("discovery-call")],
    }
}

string_schema! {
    /// The start of an interval, `HH:MM` from 00:00 to 23:59.
    TimeFrom {
        pattern: Some("^([01][0-9]|2[0-3]):[0-5][0-9]$"),
        examples: [json!("09:00")],
    }
}

string_schema! {
    /// The end of an interval, `HH:MM` from 00:00 to 24:00.
    TimeTo {
        pattern: Some("^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"),
        examples: [json!("17:00")],
    }
}

string_schema! {
    /// A day of the week.
    Weekday {
        enum_values: Some(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]),
    }
}

string_schema! {
    /// `api-platform` (created by `POST /v4/user`) or `standard` (the owner).
    UserTypeName {
        enum_values: Some(["api-platform", "standard"]),
    }
}

string_schema! {
    /// Text of at most 200 characters without control characters.
    FilterText {
        max_length: Some(200),
        pattern: Some(r"^[^\x00-\x1f\x7f-\x9f]*$"),
    }
}

string_schema! {
    /// 1–255 visible ASCII characters.
    IdempotencyKey {
        min_length: Some(1),
        max_length: Some(255),
        pattern: Some(r"^[\x21-\x7e]+$"),
    }
}

fn error(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
}

fn add_shared_answers(operation: &mut Map<String, Value>) {
    let authenticated = operation.contains_key("security");
    let reads_body = operation.contains_key("requestBody");
    if authenticated {
        let parameters = operation
            .entry("parameters")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("parameters are a list");
        parameters.retain(|p| p["name"] != "x-meetergo-api-user-id");
        parameters.push(json!({
            "name": "x-meetergo-api-user-id", "in": "header", "required": false,
            "description": "Act as this user of your company (default: the owner); a malformed id is 400, \
                            one not of your company or deleted is 404 User not found",
            "schema": {"type": "string", "format": "uuid"}}));
    }
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut add = |status: &str, answer: Value| {
        responses.entry(status).or_insert(answer);
    };
    if authenticated {
        add(
            "400",
            error("Invalid input: a malformed path id or x-meetergo-api-user-id header"),
        );
        add(
            "401",
            error("Missing authorization header / Invalid API key / API key has expired"),
        );
        add(
            "404",
            error("User not found: x-meetergo-api-user-id names no live user of your company"),
        );
        let mut limited = error("Too Many Requests: over the key's rate limit");
        limited["headers"] = json!({
            "Retry-After": {"description": "Seconds until a request is accepted again",
                            "schema": {"type": "integer", "minimum": 0}},
            "x-ratelimit-limit": {"schema": {"type": "integer"}},
            "x-ratelimit-remaining": {"schema": {"type": "integer"}}});
        add("429", limited);
        add(
            "503",
            error("Service temporarily unavailable; retry shortly"),
        );
    }
    if reads_body {
        add("413", error("The body is over 64 KiB"));
        add("415", error("The body is not JSON"));
    }
}

async fn docs() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kairos API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 2rem;color:#222}
h1{margin-bottom:0}.op{border:1px solid #ddd;border-radius:6px;margin:.8rem 0;padding:.6rem 1rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700;text-transform:uppercase}
.get{color:#1a7f37}.post{color:#0969da}.patch{color:#9a6700}.delete{color:#cf222e}
code,pre{background:#f6f8fa;border-radius:4px;padding:.1rem .3rem}pre{padding:.6rem;overflow:auto}
summary{cursor:pointer}
</style></head><body>
<h1>Kairos API</h1><p id="about">Loading <a href="/openapi.json">/openapi.json</a>…</p><div id="ops"></div>
<script>
// Text from the document goes into HTML escaped: descriptions may hold `<` (`<key id>`).
const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
fetch('/openapi.json').then(r => r.json()).then(spec => {
  document.getElementById('about').textContent = spec.info.description + ' Version ' + spec.info.version + '.';
  const ops = document.getElementById('ops');
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const div = document.createElement('details'); div.className = 'op';
      const params = (op.parameters || []).map(p => `<li><code>${esc(p.name)}</code> (${esc(p.in)}) ${esc(p.description)}</li>`).join('');
      const responses = Object.entries(op.responses || {}).map(([code, r]) => `<li><b>${esc(code)}</b> ${esc(r.description)}</li>`).join('');
      const body = op.requestBody ? `<p>Body:</p><pre>${esc(JSON.stringify(op.requestBody.content, null, 2))}</pre>` : '';
      div.innerHTML = `<summary><span class="m ${esc(method)}">${esc(method)}</span> <code>${esc(path)}</code> ${esc(op.summary)}</summary>`
        + `<p>${esc(op.description)}</p>${params ? '<p>Parameters:</p><ul>' + params + '</ul>' : ''}${body}`
        + `<p>Responses:</p><ul>${responses}</ul>`;
      ops.appendChild(div);
    }
  }
}).catch(e => { document.getElementById('about').textContent = 'Could not load the OpenAPI document: ' + e; });
</script></body></html>"#;
