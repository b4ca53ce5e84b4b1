//! `lockstepd conformance`: runs the FHIRcast 3.0.0 hub checks against any hub and prints the
//! report. Exit status 0 when every SHALL holds, 1 when one fails, 2 when the checks could not
//! run at all.

use lockstep_conformance::{Credentials, Selection, Target, Timing, TrustSource, report};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ConformanceArgs {
    /// The hub's `hub.url`, e.g. https://hub.example.org/fhircast.
    hub_url: String,
    /// The authorization server's token endpoint (client credentials).
    #[arg(long, value_name = "URL", required_unless_present = "token")]
    token_url: Option<String>,
    #[arg(long, requires = "token_url")]
    client_id: Option<String>,
    #[arg(
        long,
        env = "LOCKSTEP_CLIENT_SECRET",
        hide_env_values = true,
        requires = "client_id"
    )]
    client_secret: Option<String>,
    /// A second app to act as the other participant (default: a second token of the first).
    #[arg(long, requires = "second_client_secret")]
    second_client_id: Option<String>,
    #[arg(long, env = "LOCKSTEP_SECOND_CLIENT_SECRET", hide_env_values = true)]
    second_client_secret: Option<String>,
    /// A token obtained some other way (with --topic), instead of client credentials.
    #[arg(long, conflicts_with_all = ["token_url", "client_id"], requires = "topic")]
    token: Option<String>,
    /// The second participant's token, with --token.
    #[arg(long, requires = "token")]
    second_token: Option<String>,
    /// The topic, where the token response does not carry `hub.topic`.
    #[arg(long)]
    topic: Option<String>,
    /// Trust only the certificate(s) in this PEM file (a test hub's own CA).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Run only these checks, e.g. `1-9,29,58-69`.
    #[arg(long, value_name = "LIST")]
    only: Option<String>,
    /// Leave these checks out.
    #[arg(long, value_name = "LIST")]
    skip: Option<String>,
    /// How long the hub may take to give up on a subscriber that never answers (the spec's
    /// "about 10 s"), in seconds.
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    unanswered_seconds: u64,
    /// Write the report here instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
    Junit,
}

impl ConformanceArgs {
    fn target(&self) -> Result<Target, String> {
        let first = match (&self.token, &self.token_url) {
            (Some(token), _) => Credentials::Token {
                token: token.clone(),
                topic: self.topic.clone().unwrap_or_default(),
            },
            (None, Some(token_url)) => Credentials::Client {
                token_url: token_url.clone(),
                client_id: self.client_id.clone().ok_or("--client-id is required")?,
                client_secret: self
                    .client_secret
                    .clone()
                    .ok_or("--client-secret is required")?,
                topic: self.topic.clone(),
            },
            (None, None) => {
                return Err("give --token-url and client credentials, or --token".into());
            }
        };
        let second = match (&self.second_token, &self.second_client_id, &first) {
            (Some(token), _, _) => Some(Credentials::Token {
                token: token.clone(),
                topic: self.topic.clone().unwrap_or_default(),
            }),
            (None, Some(id), Credentials::Client { token_url, .. }) => Some(Credentials::Client {
                token_url: token_url.clone(),
                client_id: id.clone(),
                client_secret: self.second_client_secret.clone().unwrap_or_default(),
                topic: self.topic.clone(),
            }),
            _ => None,
        };
        let trust = match &self.ca_file {
            None => TrustSource::WebRoots,
            Some(path) => TrustSource::Pem(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("--ca-file {}: {e}", path.display()))?,
            ),
        };
        Ok(Target {
            hub_url: self.hub_url.clone(),
            first,
            second,
            trust,
            timing: Timing {
                unanswered: Duration::from_secs(self.unanswered_seconds),
                ..Timing::default()
            },
        })
    }
}

pub fn run(args: ConformanceArgs) -> ExitCode {
    let setup = args.target().and_then(|target| {
        let selection = Selection::parse(args.only.as_deref(), args.skip.as_deref())
            .map_err(|e| e.to_string())?;
        Ok((target, selection))
    });
    let (target, selection) = match setup {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("lockstepd conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lockstepd conformance: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime.block_on(lockstep_conformance::run(&target, &selection)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("lockstepd conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let text = match args.format {
        Format::Table => report::table(&report),
        Format::Json => report::json(&report),
        Format::Junit => report::junit(&report),
    };
    let written = match &args.output {
        Some(path) => std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    };
    if let Err(e) = written {
        eprintln!("lockstepd conformance: cannot write the report: {e}");
        return ExitCode::from(2);
    }
    if report.mandatory_failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
