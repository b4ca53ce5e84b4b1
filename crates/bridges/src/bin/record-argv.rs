//! A test helper that records how it was started. Its first argument is a folder; it writes
//! the rest of its arguments there as a JSON array, one new file per start (atomically, so a
//! reader never sees half of one). If the folder holds a file named `exit-code`, it exits with
//! that status (to test a launcher that fails).
//!
//! Launch tests start it as the "viewer": a real child process, so what is checked is the argv
//! the OS delivered, not what the bridge meant to send.

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: lockstep-record-argv <folder> [args...]");
        std::process::exit(2);
    };
    // Lossless for the UTF-8 the bridges pass; anything else shows up as a test failure.
    let args: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let text = serde_json::to_string(&args).unwrap_or_default();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("{nanos:020}-{}", std::process::id());
    let temp = dir.join(format!(".{name}.tmp"));
    let written = std::fs::File::create(&temp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&temp, dir.join(format!("{name}.json"))));
    if let Err(e) = written {
        eprintln!("cannot record argv: {e}");
        std::process::exit(3);
    }
    let code = std::fs::read_to_string(dir.join("exit-code"))
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    std::process::exit(code);
}
