//! The command line as an operator meets it: what `migrate` did, errors as
//! one paragraph (no backtrace, even with RUST_BACKTRACE=1) that name the
//! variable or file at fault, and the mistakes it refuses.

use std::process::{Command, Output, Stdio};

use crate::procs::BIN;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env("RUST_BACKTRACE", "1").stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A failure: exit code 1 and one line starting `error:`, with no backtrace.
fn failed(out: &Output) -> String {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.starts_with("error: "), "{text}");
    assert_eq!(text.trim_end().lines().count(), 1, "one paragraph: {text}");
    assert!(!text.contains("backtrace") && !text.contains("at src/"), "no backtrace: {text}");
    text
}

#[test]
fn migrate_says_what_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let first = stderr(&run(&["--data-dir", data, "migrate"], &[]));
    assert!(
        first.contains("applied 14 migration(s)") && first.contains("1 initial") && first.contains("14 hourly dedupe"),
        "{first}"
    );
    let second = stderr(&run(&["--data-dir", data, "migrate"], &[]));
    assert!(second.contains("already up to date"), "{second}");
}

#[test]
fn a_bad_setting_names_its_variable_and_a_valid_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["--data-dir", dir.path().to_str().unwrap(), "migrate"], &[("THE_EYE_WORKERS", "many")]);
    let text = failed(&out);
    assert!(text.contains("THE_EYE_WORKERS") && text.contains("for example 4"), "{text}");
}

#[test]
fn an_sqlite_url_in_a_missing_directory_is_an_error_not_a_new_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("no-such-dir/the-eye.db");
    let url = format!("sqlite://{}", db.display());
    let out = run(&["--data-dir", dir.path().to_str().unwrap(), "--database-url", &url, "migrate"], &[]);
    let text = failed(&out);
    assert!(text.contains("does not exist"), "{text}");
    assert!(!db.parent().unwrap().exists(), "nothing was created");
}

#[test]
fn a_read_only_data_dir_says_so() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&ro)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        let _ = writeln!(std::io::stderr(), "SKIPPED read-only data dir: cannot mount a read-only tmpfs (needs root)");
        return;
    }
    let out = run(&["--data-dir", ro.to_str().unwrap(), "migrate"], &[]);
    let _ = Command::new("umount").arg("-l").arg(&ro).status();
    let text = failed(&out);
    assert!(text.contains("read-only file system") && text.contains("--data-dir"), "{text}");
}

#[test]
fn an_origin_with_a_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = run(
        &["--data-dir", data, "apps", "create", "--name", "shop", "--origin", "https://shop.example.com/cart"],
        &[],
    );
    let text = failed(&out);
    assert!(text.contains("has a path") && text.contains("https://shop.example.com"), "{text}");
}

#[test]
fn createsuperuser_without_a_terminal_points_to_password_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["--data-dir", dir.path().to_str().unwrap(), "createsuperuser", "--username", "ada"], &[]);
    let text = failed(&out);
    assert!(text.contains("--password-stdin"), "{text}");
}

#[test]
fn flags_apply_only_where_they_mean_something() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // --listen is serve's: refused on other commands, before or after them.
    let before = run(&["--data-dir", data, "--listen", "127.0.0.1:9", "apps", "list"], &[]);
    assert!(!before.status.success());
    assert!(stderr(&before).contains("the-eye serve --listen"), "{}", stderr(&before));
    let after = run(&["--data-dir", data, "apps", "list", "--listen", "127.0.0.1:9"], &[]);
    assert!(!after.status.success() && stderr(&after).contains("unexpected argument '--listen'"));
    // The global ones go anywhere.
    assert!(run(&["--data-dir", data, "apps", "list"], &[]).status.success());
    assert!(run(&["apps", "list", "--data-dir", data], &[]).status.success());
    // A bare `the-eye` serves, and takes serve's flags (a bad one proves they are parsed).
    let bare = run(&["--data-dir", data, "--listen", "not-an-address"], &[]);
    assert!(stderr(&bare).contains("invalid value 'not-an-address' for '--listen"), "{}", stderr(&bare));
}
