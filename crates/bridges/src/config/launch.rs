//! `[[bridges.launch]]`: the keys of a launch bridge, and their validation into a [`Launcher`].

use super::common::{default_launch_events, open_events, yes};
use crate::launch::{AfterLaunch, AllowList, LaunchMode, Launcher, UrlOpen, check_url};
use crate::mapping::IdentifierMapping;
use crate::problem::ConfigProblem;
use crate::template::{Escape, Template};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[[bridges.launch]]`: on the configured events, open a URL or start a program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    /// Shown in the UI, SyncErrors, history and the audit trail; unique among bridges.
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `*-open` events that launch, e.g. `["ImagingStudy-open"]`.
    #[serde(default = "default_launch_events")]
    pub events: Vec<String>,
    /// URL mode: the URL template (each placeholder percent-encoded as a URL component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// URL mode: schemes a rendered URL may use.
    #[serde(default = "default_schemes")]
    pub allowed_schemes: Vec<String>,
    /// URL mode: hosts a rendered URL may name (exact, case-insensitive).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// URL mode, `http`/`https` only: GET the URL from the agent instead of handing it to the
    /// opener (viewers with an HTTP integration endpoint).
    #[serde(default)]
    pub fetch: bool,
    /// URL mode: the program that opens a URL; the URL is appended as one argument.
    #[serde(default = "default_opener")]
    pub opener: Vec<String>,
    /// Exec mode: the program to start (never a shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// Exec mode: argument templates, one argv element each (placeholders inserted raw).
    #[serde(default)]
    pub args: Vec<String>,
    /// URL mode: a URL to open when the launched context closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_close: Option<String>,
    /// Exec mode: arguments to start `program` with when the launched context closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_close_args: Option<Vec<String>>,
    /// After a launch, further switches within this window are coalesced into one launch of
    /// the latest, at the window's end. The first switch launches at once.
    #[serde(default = "default_debounce")]
    pub debounce_ms: u64,
    /// The link state after a successful launch: a launch is no proof the app followed.
    #[serde(default)]
    pub link_state_after_launch: AfterLaunch,
    /// How long a fetch may take, in milliseconds.
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_ms: u64,
    #[serde(default)]
    pub identifiers: IdentifierMapping,
}

fn default_schemes() -> Vec<String> {
    vec!["https".into()]
}
fn default_opener() -> Vec<String> {
    if cfg!(target_os = "macos") {
        vec!["open".into()]
    } else {
        vec!["xdg-open".into()]
    }
}
fn default_debounce() -> u64 {
    500
}
fn default_fetch_timeout() -> u64 {
    5000
}

/// Programs that would run a command line through a shell: a launch is an argv, never that.
const SHELLS: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "csh",
    "tcsh",
    "fish",
    "cmd",
    "powershell",
    "pwsh",
    "wscript",
    "cscript",
];

/// Programs whose job is to start another program named in their arguments: through one, the
/// no-shell rule would be one indirection away (`env sh -c …`).
const LAUNCHERS: &[&str] = &[
    "env",
    "nice",
    "ionice",
    "nohup",
    "timeout",
    "setsid",
    "stdbuf",
    "chroot",
    "xargs",
    "sudo",
    "doas",
    "su",
    "runuser",
    "pkexec",
    "busybox",
    "toybox",
    "flatpak-spawn",
    "rundll32",
    "mshta",
    "start",
];

/// Interpreters, refused when told to run code given as an argument.
const INTERPRETERS: &[&str] = &[
    "python",
    "perl",
    "ruby",
    "node",
    "nodejs",
    "deno",
    "php",
    "lua",
    "tclsh",
    "wish",
    "awk",
    "gawk",
    "osascript",
    "java",
    "jshell",
    "Rscript",
];

/// The flags that make an interpreter run its argument as code.
const CODE_FLAGS: &[&str] = &[
    "-c",
    "-e",
    "-E",
    "-r",
    "--eval",
    "--command",
    "--exec",
    "-x",
];

impl LaunchConfig {
    /// Checks what types alone cannot, and builds the launcher. Keys are the bridge's own
    /// (`url`, `identifiers.mrn[0].system`).
    pub fn validate(&self) -> Result<Launcher, ConfigProblem> {
        self.identifiers
            .validate()
            .map_err(|p| p.under("identifiers"))?;
        let opens = open_events(&self.events).map_err(|r| problem("events", r))?;
        if opens.is_empty() {
            return Err(problem("events", "name at least one *-open event"));
        }
        let mode = match (&self.url, &self.program) {
            (Some(url), None) => self.url_mode(url)?,
            (None, Some(program)) => self.exec_mode(program)?,
            _ => {
                return Err(problem(
                    "url",
                    "give either `url` (open a URL) or `program` (start a program), not both",
                ));
            }
        };
        Ok(Launcher {
            opens,
            mode,
            debounce: Duration::from_millis(self.debounce_ms),
            after_launch: self.link_state_after_launch,
            identifiers: self.identifiers.clone(),
        })
    }

    fn url_mode(&self, url: &str) -> Result<LaunchMode, ConfigProblem> {
        let allowed = AllowList {
            schemes: self.allowed_schemes.clone(),
            hosts: self.allowed_hosts.clone(),
        };
        let template = |field: &str, text: &str| -> Result<Template, ConfigProblem> {
            let template = Template::parse(text, Escape::UrlComponent)
                .map_err(|e| problem(field, e.to_string()))?;
            template
                .check_mapped(&self.identifiers)
                .map_err(|e| problem(field, e))?;
            check_url(&allowed, &template.render_sample())
                .map_err(|e| problem(field, e.to_string()))?;
            Ok(template)
        };
        let url = template("url", url)?;
        let on_close = self
            .on_close
            .as_deref()
            .map(|text| template("on_close", text))
            .transpose()?;
        if self.fetch && self.allowed_schemes.iter().any(|s| !is_http(s)) {
            return Err(problem(
                "allowed_schemes",
                "with `fetch = true` only http and https can be allowed",
            ));
        }
        let open = if self.fetch {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_millis(self.fetch_timeout_ms))
                // A redirect could lead off the allow-listed hosts.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| problem("fetch", format!("cannot make an HTTP client: {e}")))?;
            UrlOpen::Fetch(client)
        } else {
            let Some((program, leading)) = self.opener.split_first() else {
                return Err(problem("opener", "name the program that opens URLs"));
            };
            UrlOpen::Opener {
                program: program.clone(),
                leading: leading.to_vec(),
            }
        };
        if !self.args.is_empty() || self.on_close_args.is_some() {
            return Err(problem("args", "`args` belong to `program`, not `url`"));
        }
        Ok(LaunchMode::Url {
            url,
            on_close,
            allowed,
            open,
        })
    }

    fn exec_mode(&self, program: &str) -> Result<LaunchMode, ConfigProblem> {
        if program.trim().is_empty() {
            return Err(problem("program", "must not be empty"));
        }
        if let Some(why) = refused_program(program, &self.args) {
            return Err(problem("program", why));
        }
        let templates = |field: &str, args: &[String]| -> Result<Vec<Template>, ConfigProblem> {
            args.iter()
                .map(|arg| {
                    let template = Template::parse(arg, Escape::Argument)
                        .map_err(|e| problem(field, e.to_string()))?;
                    template
                        .check_mapped(&self.identifiers)
                        .map_err(|e| problem(field, e))?;
                    Ok(template)
                })
                .collect()
        };
        let args = templates("args", &self.args)?;
        let on_close_args = self
            .on_close_args
            .as_deref()
            .map(|args| templates("on_close_args", args))
            .transpose()?;
        if self.on_close.is_some() {
            return Err(problem("on_close", "exec mode uses `on_close_args`"));
        }
        Ok(LaunchMode::Exec {
            program: program.to_owned(),
            args,
            on_close_args,
        })
    }
}

fn is_http(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
}

/// Why `program` may not be a launch's program, if it may not: a shell, a program that starts
/// another one, or an interpreter told to run code from its arguments.
fn refused_program(program: &str, args: &[String]) -> Option<String> {
    let stem = std::path::Path::new(program)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(program)
        .to_ascii_lowercase();
    // `python3.11`, `perl5.36`: the name without its version.
    let name = stem.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    let is = |list: &[&str]| {
        list.iter()
            .any(|p| p.eq_ignore_ascii_case(name) || p.eq_ignore_ascii_case(&stem))
    };
    if is(SHELLS) {
        return Some(
            "a shell is refused: a launch is an argument vector, never a command line".into(),
        );
    }
    if is(LAUNCHERS) {
        return Some(format!(
            "`{stem}` starts the program named in its arguments, which would get around the \
             no-shell rule: name the program itself"
        ));
    }
    if is(INTERPRETERS) && args.iter().any(|a| CODE_FLAGS.contains(&a.as_str())) {
        return Some(format!(
            "`{stem}` with code in its arguments is refused: a launch runs a program, not a \
             script given inline (point `program` at a script file instead)"
        ));
    }
    None
}

fn problem(key: &str, reason: impl Into<String>) -> ConfigProblem {
    ConfigProblem::new(key, reason)
}
