//! The tracker's unit tests (Node's test runner, `tracker/eye.test.js`) run as
//! part of `cargo test`, and the script's size stays what the README says.

use std::io::Write;
use std::process::Command;

#[test]
fn the_trackers_node_unit_tests_pass() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = match Command::new("node").args(["--test", "tracker/"]).current_dir(root).output() {
        Ok(out) => out,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "SKIPPED tracker unit tests: cannot run node ({e})");
            return;
        }
    };
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node --test tracker/ failed:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("# fail 0") && !report.contains("# pass 0"), "{report}");
}

#[test]
fn the_tracker_is_under_two_kilobytes_gzipped() {
    use flate2::write::GzEncoder;
    let script = include_bytes!("../../static/eye.js");
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(script).unwrap();
    let size = gz.finish().unwrap().len();
    assert!(size < 2048, "eye.js is {size} bytes gzipped; the README promises under 2 KB");
}
