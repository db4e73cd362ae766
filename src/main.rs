//! The `wsgate` binary: read the configuration, start logging, serve until SIGINT or SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use wsgate::{telemetry, Application, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env_and_args() {
        Ok(settings) => settings,
        Err(wsgate::config::ConfigError::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            // Logging is not set up yet (its format is part of the configuration): plain stderr.
            let _ = writeln!(std::io::stderr(), "wsgate: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.ops.log_format);
    let stop = wsgate::startup::shutdown_signal();
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(%err, "startup failed");
            return ExitCode::FAILURE;
        }
    };
    app.run_until_stopped(stop).await;
    ExitCode::SUCCESS
}
