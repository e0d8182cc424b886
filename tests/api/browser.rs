//! `/docs` in a real browser: the page renders `/openapi.json` with JavaScript, so only a
//! browser can show that it works. `make test` installs `chromium-headless-shell` when no
//! Chromium is found; `KAIROS_CHROMIUM` names another binary.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::spawn_app;

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("KAIROS_CHROMIUM") {
        return PathBuf::from(path);
    }
    let names = [
        "chromium-headless-shell",
        "chromium",
        "chromium-browser",
        "google-chrome",
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .expect("no Chromium found: install chromium-headless-shell (make test does) or set KAIROS_CHROMIUM")
}

/// The DOM after the page's scripts ran, as Chromium serialises it.
async fn rendered_dom(url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("kairos-chromium-{}", uuid::Uuid::new_v4()));
    let run = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            // The sandbox needs user namespaces, which containers and root often lack.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("Chromium did not finish within 60 s")
        .expect("start Chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "Chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the DOM is UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_renders_every_operation_of_the_openapi_document_in_chromium() {
    let app = spawn_app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app.router.clone()).into_future());

    let spec: Value = app.get("/openapi.json").no_key().send().await.body;
    let dom = rendered_dom(&format!("http://{address}/docs")).await;

    // The script replaces "Loading …" with the document's description, or an error.
    let about = format!(
        "<p id=\"about\">{} Version {}.</p>",
        spec["info"]["description"].as_str().unwrap(),
        spec["info"]["version"].as_str().unwrap()
    );
    assert!(
        dom.contains(&about),
        "the script did not render the document: {dom}"
    );
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            let shown = format!("<span class=\"m {method}\">{method}</span> <code>{path}</code>");
            assert!(dom.contains(&shown), "{method} {path} is not on the page");
        }
    }
    assert!(
        operations >= 10,
        "the document lists {operations} operations"
    );
    assert_eq!(dom.matches("<details class=\"op\">").count(), operations);

    server.abort();
    app.stop().await;
}
