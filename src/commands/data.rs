//! `the-eye export`, `upkeep`, `erase`, `backup`, `import django` and
//! `stats rebuild`: the life of the data, from the command line.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use super::{audit, cli_actor, open_store};
use crate::config::Settings;
use crate::lifecycle::export::{self, ExportFilters};
use crate::lifecycle::{self, import};

/// A progress bar on stderr (hidden when stderr is not a terminal, as in
/// scripts and tests), counting `unit`.
fn bar(unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    let template =
        format!("{{elapsed_precise}} [{{wide_bar}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}} left)");
    bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar
}

/// A progress callback `(done, total)` that moves `bar`.
fn follow(bar: &ProgressBar) -> impl Fn(u64, u64) + Send + Sync + '_ {
    |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    }
}

/// `the-eye export --out FILE [filters]`: writes the export to FILE through a
/// temporary file beside it, renamed into place only once complete, so a
/// failed export never leaves a partial file under the final name.
pub async fn export(settings: Settings, filters: ExportFilters, out: &Path) -> anyhow::Result<()> {
    let (format, selection) = filters.parse().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(!out.exists(), "{} exists already; give a new file name", out.display());
    let store = open_store(&settings).await?;
    let reader: std::sync::Arc<dyn crate::store::EventReader> = store.clone();
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".the-eye-export-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let progress = bar("rows");
    if let Some(n) = export::estimate(reader.as_ref(), &selection).await {
        progress.set_length(n);
    }
    let mut chunks = std::pin::pin!(export::chunks(reader, selection, format));
    let (mut rows, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.context("the store failed during the export; nothing was written")?;
        let lines = chunk.iter().filter(|b| **b == b'\n').count() as u64;
        rows += lines;
        bytes += chunk.len() as u64;
        file.write_all(&chunk).with_context(|| format!("writing {}", file.path().display()))?;
        progress.set_length(progress.length().unwrap_or(0).max(rows));
        progress.set_position(rows);
    }
    file.as_file().sync_all()?;
    file.persist_noclobber(out)
        .map_err(|e| anyhow::anyhow!("cannot move the export to {}: {}", out.display(), e.error))?;
    progress.finish_and_clear();
    // CSV has a header line; a quoted cell may span lines, so this is a count of lines.
    let noun = if format == export::Format::Csv { "lines" } else { "rows" };
    eprintln!("wrote {rows} {noun} ({bytes} bytes) to {}", out.display());
    Ok(())
}

/// `the-eye upkeep`: applies retention (and the store's upkeep) now; prints
/// what it removed as JSON.
pub async fn upkeep(settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let retention = settings.store.retention;
    if retention == crate::config::Retention::default() {
        eprintln!("no retention is set (retention_days, error_retention_days, rollup_retention_days): nothing expires");
    }
    store.maintain().await?;
    let removed = lifecycle::expire(store.as_ref(), &retention, chrono::Utc::now(), std::time::Duration::ZERO).await?;
    println!("{}", serde_json::to_string(&removed)?);
    eprintln!(
        "removed {} events, {} event errors and {} rollup rows",
        removed.events, removed.errors, removed.rollup_rows
    );
    Ok(())
}

/// `the-eye erase --session ID`: deletes the session's events and errors,
/// recorded in the audit log (as a digest of the id) under `cli:$USER`.
pub async fn erase(settings: Settings, session_id: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!session_id.is_empty(), "--session must not be empty");
    let store = open_store(&settings).await?;
    let erased = lifecycle::erase_session(store.as_ref(), session_id, &cli_actor()).await?;
    println!("{}", serde_json::json!({"events": erased.events, "errors": erased.errors}));
    eprintln!(
        "erased {} events and {} event errors of that session; the audit log records it as {}",
        erased.events,
        erased.errors,
        lifecycle::session_digest(session_id)
    );
    Ok(())
}

/// `the-eye backup FILE`: a consistent copy of the SQLite store, taken while
/// the service runs.
pub async fn backup(settings: Settings, file: &Path) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    store.backup(file).await?;
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    audit(store.as_ref(), "backup", &file.display().to_string(), format!("{size} bytes")).await;
    eprintln!(
        "backed up the store to {} ({size} bytes); see \"Your data\" in the README to restore it",
        file.display()
    );
    Ok(())
}

/// `the-eye import django --from postgres://…`.
pub async fn import_django(settings: Settings, from: &str) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let progress = bar("rows");
    let report = import::import_django(from, store.as_ref(), &settings.rules, &follow(&progress)).await?;
    progress.finish_and_clear();
    audit(
        store.as_ref(),
        "import django",
        "the Django original",
        format!("{} events and {} event errors added", report.events_added, report.errors_added),
    )
    .await;
    println!("{}", serde_json::to_string(&report)?);
    eprintln!(
        "read {} events ({} nonconforming, stored with application {:?}) and {} event errors; \
         added {} events, {} event errors and {} categories",
        report.events_read,
        report.events_nonconforming,
        import::NONCONFORMING,
        report.errors_read,
        report.events_added,
        report.errors_added,
        report.categories_created
    );
    Ok(())
}

/// `the-eye stats rebuild`: recounts the rollups from the stored rows.
pub async fn rebuild_stats(settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let progress = bar("rows");
    let counted = store.rebuild_rollups(&follow(&progress)).await?;
    progress.finish_and_clear();
    eprintln!("recounted {counted} events and event errors into the rollups");
    Ok(())
}
