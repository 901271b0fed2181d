//! The module layering of `docs/architecture.md`, checked against the code:
//! a module imports only modules on lower rows, except the handlers' and
//! middlewares' `State<AppState>` from `app` (axum's pattern).

use std::collections::BTreeSet;
use std::path::Path;

/// The rows of the picture in docs/architecture.md.
const LAYERS: &[(&str, u8)] = &[
    ("commands", 7),
    ("app", 6),
    ("openapi", 5),
    ("admin", 4),
    ("api", 4),
    ("ingest", 4),
    ("website", 4),
    ("hosts", 4),
    ("tasks", 4),
    ("worker", 3),
    ("lifecycle", 3),
    ("http_error", 3),
    ("telemetry", 3),
    ("config", 2),
    ("paging", 2),
    ("peer", 2),
    ("request_log", 2),
    ("server", 2),
    ("templates", 2),
    ("store", 1),
    ("queue", 1),
    ("rate", 1),
    ("metrics", 0),
    ("domain", 0),
    ("priority", 0),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut seen = BTreeSet::new();
    let mut violations = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().to_string_lossy().to_string();
        let top = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let own = layer(&top).unwrap_or_else(|| panic!("module {top} is not in the layering; add it to the picture"));
        seen.insert(top.clone());
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().map(|l| l.split("//").next().unwrap_or("")) {
            for used in line.split("crate::").skip(1) {
                let name: String = used.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let Some(theirs) = layer(&name) else { continue };
                if name != top && theirs >= own && name != "app" {
                    violations.push(format!("{rel}: {top} (row {own}) imports {name} (row {theirs})"));
                }
            }
        }
    }
    assert!(violations.is_empty(), "imports against the layering:\n{}", violations.join("\n"));
    assert_eq!(seen.len(), LAYERS.len(), "every module of the picture exists");
}
