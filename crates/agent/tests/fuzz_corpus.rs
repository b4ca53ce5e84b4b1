//! Replays every config-file fuzz corpus input (and every input a fuzzer once crashed on)
//! through the body cargo-fuzz runs, on stable Rust, so CI keeps what the fuzzer found fixed.

use std::path::Path;

#[test]
fn config_file_corpus() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut replayed = 0;
    let mut failed = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join("config_file")) else {
            continue;
        };
        for path in entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()) {
            let data = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| lockstep_agent::config::fuzz_config_file(&data)).is_err()
            {
                failed.push(path.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no corpus for the config_file fuzz target");
    assert!(failed.is_empty(), "config_file panics on: {failed:#?}");
}
