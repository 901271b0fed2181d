//! The life of the data from the outside, on both backends: statistics,
//! exports, erasure, retention by the workers' upkeep, and the commands that
//! do the same from a shell (export, upkeep, erase, backup and restore,
//! stats rebuild, import from the Django original).

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;
use the_eye::api::auth;
use the_eye::config::RawSettings;

use crate::helpers::{fixture, pageview, TestApp};
use crate::procs::{create_app_key, eventually, postgres_database, Eye};

/// The settings change that puts a test on PostgreSQL; `None` (after saying
/// so) when `THE_EYE_TEST_POSTGRES_URL` is unset.
async fn on_postgres(test: &str) -> Option<String> {
    let admin = crate::helpers::service_url("THE_EYE_TEST_POSTGRES_URL", test)?;
    Some(postgres_database(&admin).await)
}

/// Runs `the-eye ARGS…`; returns (success, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = crate::procs::run_with_stdin(args, env, "");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A token that may erase, made through the store as `tokens create --erase` does.
async fn erase_token(app: &TestApp) -> String {
    let token = auth::new_token();
    app.state.store.create_token("dpo", &auth::hash_token(&token), true).await.unwrap();
    token
}

/// Sends sessions `s1` (3 events and an unknown category) and `s2` (2 events,
/// one whose path and session id would be spreadsheet formulas), and stores them.
async fn fill(app: &TestApp) {
    let mut events: Vec<Value> = (0..3).map(|i| pageview("s1", i)).collect();
    events.push(pageview("=cmd|' /C calc'!A0", 10));
    events[3]["data"]["path"] = json!("=HYPERLINK(\"http://evil.example\",\"click\")");
    events.push(pageview("s2", 11));
    let mut bad = pageview("s1", 20);
    bad["category"] = json!("no such category");
    events.push(bad);
    app.accept(&json!(events)).await;
    app.process().await;
}

fn lines(body: &str) -> Vec<&str> {
    body.lines().filter(|l| !l.is_empty()).collect()
}

async fn stats_exports_and_erasure_through_the_api(change: impl FnOnce(&mut RawSettings)) {
    let app = TestApp::spawn_with(change).await;
    fill(&app).await;

    let stats = app.get("/api/stats?from=2021-01-01T00:00:00Z&to=2021-01-02T00:00:00Z&bucket=1h&group_by=name").await;
    assert_eq!(stats["total"], 5, "{stats}");
    assert_eq!(stats["series"][0]["key"], json!({"category": "page interaction", "name": "pageview"}));
    assert_eq!(stats["series"][0]["points"], json!([{"bucket": "2021-01-01T09:00:00Z", "count": 5}]));
    let now = chrono::Utc::now();
    let errors = app
        .get(&format!(
            "/api/stats?kind=errors&group_by=reason&bucket=5m&from={}",
            (now - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ")
        ))
        .await;
    assert_eq!(errors["series"][0]["key"], json!({"reason": "unknown_category"}), "{errors}");
    assert_eq!(errors["total"], 1);

    // Exports: every row, in either format, with formulas made harmless in CSV.
    let ndjson = app.get_response("/api/export?format=ndjson").await;
    assert_eq!(ndjson.status(), StatusCode::OK);
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let body = ndjson.text().await.unwrap();
    let rows: Vec<Value> = lines(&body).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 5);
    let api: Vec<Value> = app.all("/api/events?order=asc", "events").await;
    assert_eq!(rows, api, "an export holds what the read API shows, oldest first");
    let csv = app.get_response("/api/export?format=csv").await;
    assert!(csv.headers()["content-disposition"].to_str().unwrap().contains(".csv"));
    let csv = csv.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        ["event_id", "timestamp", "received_at", "session_id", "category", "name", "application", "data"]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 5);
    let formula = records.iter().find(|r| r[3].contains("cmd")).unwrap();
    assert_eq!(&formula[3], "'=cmd|' /C calc'!A0", "a formula cell starts with a quote");
    assert!(formula[7].starts_with('{') && formula[7].contains("=HYPERLINK"), "JSON cells start with a brace");
    let session = app.get_response("/api/export?session_id=s1&format=csv").await.text().await.unwrap();
    assert_eq!(lines(&session).len(), 4, "the header and session s1's three events");
    let errors = app.get_response("/api/export?kind=errors").await.text().await.unwrap();
    let errors: Vec<Value> = lines(&errors).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["reasons"][0]["code"], "unknown_category");

    // Erasure: a plain read token may not; one made to erase may, once or twice.
    let url = app.url("/api/sessions/s1");
    let refused = app.client.delete(&url).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refusal: Value = refused.json().await.unwrap();
    assert!(refusal["error"]["message"].as_str().unwrap().contains("--erase"), "{refusal}");
    let dpo = erase_token(&app).await;
    let erased = app.client.delete(&url).bearer_auth(&dpo).send().await.unwrap();
    assert_eq!(erased.status(), StatusCode::OK);
    assert_eq!(erased.json::<Value>().await.unwrap(), json!({"events": 3, "errors": 1}));
    let again: Value = app.client.delete(&url).bearer_auth(&dpo).send().await.unwrap().json().await.unwrap();
    assert_eq!(again, json!({"events": 0, "errors": 0}));
    assert!(app.all("/api/events?session_id=s1", "events").await.is_empty());
    assert!(app.errors().await.is_empty(), "the session's event error went too");
    let stats = app.get("/api/stats?from=2021-01-01T00:00:00Z&to=2021-01-02T00:00:00Z").await;
    assert_eq!(stats["total"], 2, "the counts follow: {stats}");
    let log = app.state.store.actions(None, 10).await.unwrap();
    // Newest first: the first erasure is the last entry.
    let entry = log.iter().rfind(|a| a.action == "erase session").expect("audited");
    assert_eq!(entry.username, "token:dpo");
    assert_eq!(entry.object, the_eye::lifecycle::session_digest("s1"));
    assert!(!format!("{entry:?}").contains("\"s1\""), "the log keeps no session id: {entry:?}");
    assert_eq!(entry.detail, "3 events and 1 event errors erased");
    app.shutdown().await;
}

#[tokio::test]
async fn sqlite_stats_exports_and_erasure_through_the_api() {
    stats_exports_and_erasure_through_the_api(|_| {}).await;
}

#[tokio::test]
async fn postgres_stats_exports_and_erasure_through_the_api() {
    let Some(url) = on_postgres("PostgreSQL stats, exports and erasure").await else { return };
    stats_exports_and_erasure_through_the_api(|s| s.database_url = Some(url)).await;
}

#[tokio::test]
async fn bad_stats_and_export_parameters_are_named() {
    let app = TestApp::spawn().await;
    for (query, words) in [
        ("/api/stats?group_by=reason", "events have no reason"),
        ("/api/stats?kind=errors&group_by=name", "no name"),
        ("/api/stats?bucket=7m", "bucket must be"),
        ("/api/stats?from=2021-01-02T00:00:00Z&to=2021-01-01T00:00:00Z", "from must be before to"),
        ("/api/stats?from=1990-01-01T00:00:00Z&bucket=5m", "more than 10000 buckets"),
        ("/api/stats?colour=red", "colour"),
        ("/api/export?format=xml", "format must be ndjson or csv"),
        ("/api/export?kind=errors&name=x", "no name"),
        ("/api/export?reason=schema", "kind=errors"),
        ("/api/export?from=yesterday", "from"),
    ] {
        let response = app.get_response(query).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{query}: {message}");
    }
    app.shutdown().await;
}

async fn the_workers_upkeep_applies_retention(change: impl FnOnce(&mut RawSettings)) {
    let app = TestApp::spawn_with(|s| {
        change(s);
        s.workers = 1;
        s.retention_days = 30;
        s.error_retention_days = 30;
        s.upkeep_interval_secs = 1;
    })
    .await;
    let mut recent = pageview("recent", 1);
    recent["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
    app.accept(&json!([pageview("old", 1), pageview("old", 2), recent])).await;
    // The 2021 events are stored, then removed by the upkeep; the recent one stays.
    eventually(30, "retention removed the old events", || async {
        let events = app.events().await;
        events.len() == 1 && events[0]["session_id"] == "recent"
    })
    .await;
    let stats = app.get("/api/stats?from=2021-01-01T00:00:00Z&to=2021-01-02T00:00:00Z").await;
    assert_eq!(stats["total"], 2, "age is not erasure: the counts stay");
    app.shutdown().await;
}

#[tokio::test]
async fn sqlite_the_workers_upkeep_applies_retention() {
    the_workers_upkeep_applies_retention(|_| {}).await;
}

#[tokio::test]
async fn postgres_the_workers_upkeep_applies_retention() {
    let Some(url) = on_postgres("PostgreSQL retention").await else { return };
    the_workers_upkeep_applies_retention(|s| s.database_url = Some(url)).await;
}

/// A stopped app's data dir with `fill`'s rows in it.
async fn filled_data_dir() -> std::sync::Arc<tempfile::TempDir> {
    let app = TestApp::spawn().await;
    fill(&app).await;
    let dir = app.dir.clone();
    app.shutdown().await;
    dir
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_export_command_writes_a_whole_file_or_none() {
    let dir = filled_data_dir().await;
    let data = dir.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("events.csv");
    let (ok, _, err) = run(&["--data-dir", data, "export", "--format", "csv", "--out", file.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert!(err.contains("wrote 6 lines"), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("event_id,timestamp,") && text.contains("'=cmd|"), "{text}");
    let (ok, _, err) = run(&["--data-dir", data, "export", "--out", file.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("exists already"), "never overwrites: {err}");

    // A row the store cannot read, past the first page: the export fails part-way.
    let db = dir.path().join("the-eye.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n (value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n WHERE value < 1500)
         INSERT INTO events (event_id, session_id, category, name, data, occurred_at, received_at, created_at)
         SELECT randomblob(16), 'bulk', 'page interaction', 'pageview', '{}', 1700000000000000 + value, 0, 0 FROM n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // The newest, so the last page: the first thousand rows are written before it fails.
    sqlx::query("UPDATE events SET data = 'not json' WHERE id = (SELECT max(id) FROM events)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let broken = out.path().join("broken.ndjson");
    let (ok, _, err) = run(&["--data-dir", data, "export", "--out", broken.to_str().unwrap()], &[]);
    assert!(!ok, "the export must fail");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(files_in(out.path()), ["events.csv"], "no partial file, under any name");
}

#[tokio::test]
async fn upkeep_erase_and_stats_rebuild_from_the_command_line() {
    let dir = filled_data_dir().await;
    let data = dir.path().to_str().unwrap();
    let (ok, out, err) = run(&["--data-dir", data, "erase", "--session", "s2"], &[]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"events": 1, "errors": 0}));
    assert!(err.contains("session sha256:"), "{err}");
    let (ok, out, err) = run(&["--data-dir", data, "upkeep"], &[("THE_EYE_RETENTION_DAYS", "30")]);
    assert!(ok, "{err}");
    let removed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(removed, json!({"events": 4, "errors": 0, "rollup_rows": 0}), "the 2021 events go: {err}");
    let (ok, _, err) = run(&["--data-dir", data, "upkeep"], &[]);
    assert!(ok && err.contains("no retention is set"), "{err}");
    let (ok, _, err) = run(&["--data-dir", data, "stats", "rebuild"], &[]);
    assert!(ok && err.contains("recounted 1 events and event errors"), "{err}");
    let (ok, _, err) = run(&["--data-dir", data, "erase", "--session", ""], &[]);
    assert!(!ok && err.contains("--session must not be empty"), "{err}");
}

/// A `the-eye serve` process on a fresh data dir, once it has stored `n`
/// pageviews of session `session`, sent in one request.
async fn serving_with_stored(session: &str, n: u32) -> (tempfile::TempDir, Eye) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let key = create_app_key(&["--data-dir", data], "site");
    let token = crate::procs::create_token(&["--data-dir", data]);
    let port = crate::procs::free_port().to_string();
    let eye = Eye::start(&["--data-dir", data, "serve", "--listen", &format!("127.0.0.1:{port}")], &[]).await;
    let base = eye.base.clone().unwrap();
    let client = reqwest::Client::new();
    let events: Vec<Value> = (0..n).map(|i| pageview(session, i)).collect();
    let sent = client.post(format!("{base}/collector")).header("x-eye-key", &key).json(&events).send().await.unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    eventually(30, "the events are stored", || async {
        crate::procs::count_events(&client, &base, &token).await == Some(n as usize)
    })
    .await;
    (dir, eye)
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_into_a_fresh_data_dir() {
    let (dir, eye) = serving_with_stored("backed-up", 50).await;
    let data = dir.path().to_str().unwrap();
    let copy = dir.path().join("copy.db");
    let (ok, _, err) = run(&["--data-dir", data, "backup", copy.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    eye.terminate(10).await;

    // Restore: the copy becomes the store of a fresh data dir.
    let text = exported_from(&copy);
    assert_eq!(lines(&text).len(), 50);
    assert!(lines(&text).iter().all(|l| l.contains("\"backed-up\"")));
}

/// The export of a fresh data dir whose store is a copy of `db` alone (no
/// `-wal` beside it), as an operator restores a backup or copies that one file.
fn exported_from(db: &Path) -> String {
    let fresh = tempfile::tempdir().unwrap();
    std::fs::copy(db, fresh.path().join("the-eye.db")).unwrap();
    let out = fresh.path().join("events.ndjson");
    let (ok, _, err) =
        run(&["--data-dir", fresh.path().to_str().unwrap(), "export", "--out", out.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    std::fs::read_to_string(&out).unwrap()
}

/// How many events `DATA_DIR/the-eye.db` alone holds (its `-wal` left behind).
fn events_in_the_database_file(data_dir: &Path) -> usize {
    lines(&exported_from(&data_dir.join("the-eye.db"))).len()
}

/// Bytes in a WAL file of the data dir, 0 when there is none.
fn wal_bytes(data_dir: &Path, wal: &str) -> u64 {
    std::fs::metadata(data_dir.join(wal)).map(|m| m.len()).unwrap_or(0)
}

/// An operator who stops the service and copies `the-eye.db` alone (not
/// its `-wal`) must still have every stored event: a clean stop closes the
/// store, and SQLite folds the WAL back into the file as the last connection
/// closes. The spool's WAL is empty too. A command (here an erasure) closes
/// the store it opened the same way, so what it did is in the file as well.
#[tokio::test]
async fn a_clean_stop_leaves_every_stored_event_in_the_database_file_itself() {
    let (dir, eye) = serving_with_stored("kept", 200).await;
    let data = dir.path().to_str().unwrap();
    let status = eye.terminate(30).await.expect("a clean stop ends within its deadline");
    assert!(status.success(), "{status:?}");
    for wal in ["the-eye.db-wal", "spool.db-wal"] {
        assert_eq!(wal_bytes(dir.path(), wal), 0, "{wal} still holds data after a clean stop");
    }
    assert_eq!(events_in_the_database_file(dir.path()), 200);

    let (ok, out, err) = run(&["--data-dir", data, "erase", "--session", "kept"], &[]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"events": 200, "errors": 0}));
    assert_eq!(wal_bytes(dir.path(), "the-eye.db-wal"), 0, "the erasure is not left in the WAL");
    assert_eq!(events_in_the_database_file(dir.path()), 0, "the erased events are gone from the file itself");
    // A command's last write (here the audit entry) used to be left in the
    // WAL now and then: the connection that made it was still on its way
    // back into the pool when the pool closed. A few more runs catch that.
    for _ in 0..5 {
        let (ok, _, err) = run(&["--data-dir", data, "erase", "--session", "kept"], &[]);
        assert!(ok, "{err}");
        assert_eq!(wal_bytes(dir.path(), "the-eye.db-wal"), 0, "a command's last write is left in the WAL");
    }
}

#[tokio::test]
async fn postgres_has_no_backup_command_and_says_what_to_use() {
    let Some(url) = on_postgres("PostgreSQL backup message").await else { return };
    let target = tempfile::tempdir().unwrap();
    let file = target.path().join("x.db");
    let (ok, _, err) = run(&["--database-url", &url, "backup", file.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("pg_dump"), "{err}");
}

/// The Django original's three tables, as its migrations made them.
const DJANGO_SCHEMA: &str = "
CREATE TABLE collector_category (id bigserial PRIMARY KEY, name varchar(255) NOT NULL UNIQUE);
CREATE TABLE collector_event (
    id bigserial PRIMARY KEY,
    session_id varchar(255) NOT NULL,
    category_id bigint NOT NULL REFERENCES collector_category (id) DEFERRABLE INITIALLY DEFERRED,
    name varchar(255) NOT NULL,
    data jsonb NOT NULL,
    timestamp timestamp with time zone NOT NULL,
    created_at timestamp with time zone NOT NULL
);
CREATE TABLE collector_eventerror (
    id bigserial PRIMARY KEY,
    message text NOT NULL,
    data json NOT NULL,
    created_at timestamp with time zone NOT NULL
);
INSERT INTO collector_category (name) VALUES ('page interaction'), ('legacy widgets');
INSERT INTO collector_event (session_id, category_id, name, data, timestamp, created_at)
SELECT 'django-' || (i % 7), 1, 'pageview', jsonb_build_object('host', 'old.example', 'path', '/p/' || i),
       timestamptz '2023-05-01 10:00:00+00' + i * interval '1 minute',
       timestamptz '2023-05-01 10:00:01+00' + i * interval '1 minute'
FROM generate_series(1, 6000) AS i;
-- Breaks today's schema for pageview (no path), and a category the seed lacks.
INSERT INTO collector_event (session_id, category_id, name, data, timestamp, created_at) VALUES
    ('django-x', 1, 'pageview', '{\"host\": \"old.example\"}', '2023-05-02 10:00:00+00', '2023-05-02 10:00:00+00'),
    ('django-x', 2, 'spin', '{\"speed\": 3}', '2023-05-02 10:01:00+00', '2023-05-02 10:01:00+00');
INSERT INTO collector_eventerror (message, data, created_at) VALUES
    ('Invalid category', '{\"category\": \"nope\", \"session_id\": \"django-y\"}', '2023-05-03 10:00:00+00'),
    ('Malformed JSON', '\"<not an event>\"', '2023-05-03 10:00:01+00');
";

async fn django_database(admin: &str) -> String {
    let url = postgres_database(admin).await;
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(DJANGO_SCHEMA).execute(&mut db).await.unwrap();
    url
}

async fn importing_from_django_twice_adds_once(target: &[&str]) {
    let Some(admin) = crate::helpers::service_url("THE_EYE_TEST_POSTGRES_URL", "import from Django") else { return };
    let source = django_database(&admin).await;
    let import = |args: &[&str]| {
        let (ok, out, err) = run(&[args, &["import", "django", "--from", &source]].concat(), &[]);
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let first = import(target);
    assert_eq!(first["events_read"], 6002, "{first}");
    assert_eq!(first["events_added"], 6002);
    assert_eq!(first["events_nonconforming"], 1, "the pageview without a path: {first}");
    assert_eq!(first["categories_created"], 1, "legacy widgets");
    assert_eq!(first["errors_added"], 2);
    let second = import(target);
    assert_eq!((second["events_added"].clone(), second["errors_added"].clone()), (json!(0), json!(0)), "{second}");

    // What came over, as an export shows it.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("x.ndjson");
    let (ok, _, err) =
        run(&[target, &["export", "--session-id", "django-x", "--out", file.to_str().unwrap()]].concat(), &[]);
    assert!(ok, "{err}");
    let rows: Vec<Value> =
        lines(&std::fs::read_to_string(&file).unwrap()).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let apps: Vec<&str> = rows.iter().map(|r| r["application"].as_str().unwrap()).collect();
    assert_eq!(apps, ["django-nonconforming", "django"], "marked by how today's rules judge them");
    assert_eq!(rows[1]["category"], "legacy widgets");
    let errors = out.path().join("e.ndjson");
    let (ok, _, err) = run(&[target, &["export", "--kind", "errors", "--out", errors.to_str().unwrap()]].concat(), &[]);
    assert!(ok, "{err}");
    let errors: Vec<Value> =
        lines(&std::fs::read_to_string(&errors).unwrap()).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(errors[0]["reasons"][0], json!({"field": "", "code": "django_error", "message": "Invalid category"}));
    assert_eq!(errors[1]["raw"], "\"<not an event>\"");
}

#[tokio::test]
async fn importing_from_django_into_sqlite_twice_adds_once() {
    let dir = tempfile::tempdir().unwrap();
    importing_from_django_twice_adds_once(&["--data-dir", dir.path().to_str().unwrap()]).await;
}

#[tokio::test]
async fn importing_from_django_into_postgres_twice_adds_once() {
    let Some(url) = on_postgres("import from Django into PostgreSQL").await else { return };
    importing_from_django_twice_adds_once(&["--database-url", &url]).await;
}

#[tokio::test]
async fn importing_from_a_database_that_is_not_djangos_says_so() {
    let Some(admin) = crate::helpers::service_url("THE_EYE_TEST_POSTGRES_URL", "import from a wrong database") else {
        return;
    };
    let empty = postgres_database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(&["--data-dir", dir.path().to_str().unwrap(), "import", "django", "--from", &empty], &[]);
    assert!(!ok && err.contains("no table collector_category"), "{err}");
}

#[tokio::test]
async fn hostile_strings_survive_an_export_round_trip() {
    // One of the strings is 70,000 characters long.
    let app = TestApp::spawn_with(|s| s.max_event_bytes = 128 * 1024).await;
    let strings = fixture("hostile-strings.json");
    let events: Vec<Value> = strings
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut e = pageview(&format!("h{i}"), i as u32);
            e["data"]["path"] = s.clone();
            e
        })
        .collect();
    app.accept(&json!(events)).await;
    app.process().await;
    let body = app.get_response("/api/export?format=csv").await.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let paths: Vec<String> = reader
        .records()
        .map(|r| {
            let data: Value = serde_json::from_str(&r.unwrap()[7]).unwrap();
            data["path"].as_str().unwrap().to_string()
        })
        .collect();
    // Those the rules accept (one holds U+0000, which no event may) come back as they went in.
    let stored: Vec<String> = app
        .all("/api/events?order=asc", "events")
        .await
        .iter()
        .map(|e| e["data"]["path"].as_str().unwrap().into())
        .collect();
    assert!(stored.len() >= strings.as_array().unwrap().len() - 1, "{}", stored.len());
    assert_eq!(paths, stored);
    app.shutdown().await;
}
