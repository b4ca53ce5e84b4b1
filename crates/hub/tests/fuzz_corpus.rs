//! Replays every fuzz corpus input, and every input a fuzzer once crashed on, through the same
//! fuzz bodies cargo-fuzz runs (`lockstep_hub::fuzzing`), on stable Rust: CI needs no nightly
//! and no libFuzzer to keep what the fuzzers found fixed.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        files.extend(entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
    }
    files.sort();
    assert!(!files.is_empty(), "no corpus for fuzz target {target}");
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    let mut failed = Vec::new();
    for path in inputs(target) {
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target} panics on: {failed:#?}");
}

#[test]
fn subscription_request_corpus() {
    replay(
        "subscription_request",
        lockstep_hub::fuzzing::subscription_request,
    );
}

#[test]
fn event_json_corpus() {
    replay("event_json", lockstep_hub::fuzzing::event_json);
}

#[test]
fn websocket_frames_corpus() {
    replay("websocket_frames", lockstep_hub::fuzzing::websocket_frames);
}

#[test]
fn token_request_corpus() {
    replay("token_request", lockstep_hub::fuzzing::token_request);
}
