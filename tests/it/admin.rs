//! `the-eye createsuperuser`, through the real binary.

use std::io::Write;
use std::process::{Command, Stdio};

use the_eye::admin::users::verify_password;
use the_eye::store::{SqliteStore, Store};

use crate::procs::BIN;

fn createsuperuser(dir: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(["--data-dir", dir, "createsuperuser"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn createsuperuser_for_scripts_stores_an_argon2id_hash() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let args = ["--username", "ada", "--email", "ada@example.com", "--password-stdin"];
    let out = createsuperuser(d, &args, "a long passphrase\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Superuser \"ada\" created"));

    let store = SqliteStore::connect(&format!("sqlite://{d}/the-eye.db")).await.unwrap();
    let hash = store.user_password_hash("ada").await.unwrap().expect("stored");
    assert!(hash.starts_with("$argon2id$"));
    assert!(verify_password("a long passphrase", &hash));
    assert!(!hash.contains("a long passphrase"));

    let again = createsuperuser(d, &args, "another long passphrase\n");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[tokio::test]
async fn createsuperuser_refuses_weak_passwords_and_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let weak = createsuperuser(d, &["--username", "ada", "--password-stdin"], "12345\n");
    assert!(!weak.status.success());
    let message = String::from_utf8_lossy(&weak.stderr);
    assert!(
        message.contains("too weak") && message.contains("shorter than 10") && message.contains("numeric"),
        "{message}"
    );
    let no_name = createsuperuser(d, &["--password-stdin"], "a long passphrase\n");
    assert!(String::from_utf8_lossy(&no_name.stderr).contains("needs --username"));
    let bad_name = createsuperuser(d, &["--username", "a b", "--password-stdin"], "a long passphrase\n");
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("username is 1 to 150"));
    // Interactive without a terminal and without input: it says so and stores nothing.
    let interactive = createsuperuser(d, &[], "");
    assert!(!interactive.status.success());
}
