//! `GET /openapi.json` (OpenAPI 3.1, generated from the handlers' annotations) and `GET /docs`,
//! a self-contained page that renders it: no CDN, so it works on a machine without internet.

use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
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
    components(schemas(super::error::ErrorBody, super::error::FieldErrorBody)),
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
    axum::Json(ApiDoc::openapi())
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
