//! `wsgate-scenarios --url URL`: runs the scenario suite against a running wsgate, one PASS/FAIL/SKIP
//! line per scenario, exit status 1 when any scenario fails.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsgate_testkit::scenarios::{self, Ctx, Outcome};
use wsgate_testkit::Gateway;

const USAGE: &str =
    "usage: wsgate-scenarios --url URL [--only NAME[,NAME…]] [--auth-timeout-ms MS] \
[--jwt-leeway-secs S] [--max-wait-secs S] [--recovery-messages N] [--max-rooms N] [--list]

  --url              the server, e.g. http://127.0.0.1:8080
  --only             run only these scenarios
  --auth-timeout-ms  the server's WSGATE_AUTH_TIMEOUT_MS (default 10000)
  --jwt-leeway-secs  the server's WSGATE_JWT_LEEWAY_SECS (default 5)
  --max-wait-secs    longest wait for a TTL to run out; longer ones are skipped (default 40)
  --recovery-messages the server's WSGATE_RECOVERY_MESSAGES (default 1000)
  --max-rooms        the server's WSGATE_MAX_ROOMS_PER_SOCKET (default 100)
  --list             print the scenario names and exit

The server API scenario needs the server's key in the environment as WSGATE_SCENARIO_API_KEY
(never on the command line, where `ps` would show it); without it, it is skipped.";

struct Args {
    url: String,
    only: Vec<String>,
    auth_timeout: Duration,
    leeway: Duration,
    max_wait: Duration,
    recovery_messages: usize,
    max_rooms: usize,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        url: String::new(),
        only: Vec::new(),
        auth_timeout: Duration::from_millis(10_000),
        leeway: Duration::from_secs(5),
        max_wait: Duration::from_secs(40),
        recovery_messages: 1000,
        max_rooms: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--list" {
            for s in scenarios::all() {
                println!("{}", s.name);
            }
            return Ok(None);
        }
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            return Ok(None);
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--url" => args.url = value.clone(),
            "--only" => args.only = value.split(',').map(str::to_string).collect(),
            "--auth-timeout-ms" => args.auth_timeout = Duration::from_millis(number()?),
            "--jwt-leeway-secs" => args.leeway = Duration::from_secs(number()?),
            "--max-wait-secs" => args.max_wait = Duration::from_secs(number()?),
            "--recovery-messages" => args.recovery_messages = number()? as usize,
            "--max-rooms" => args.max_rooms = number()? as usize,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.url.is_empty() {
        return Err("--url is required".into());
    }
    Ok(Some(args))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let gw = match Gateway::new(&args.url) {
        Ok(gw) => gw,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let ctx = Arc::new(Ctx {
        gw,
        auth_timeout: args.auth_timeout,
        leeway: args.leeway,
        max_wait: args.max_wait,
        api_key: std::env::var("WSGATE_SCENARIO_API_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
        recovery_messages: args.recovery_messages,
        max_rooms: args.max_rooms,
    });
    let selected: Vec<_> = scenarios::all()
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s.name))
        .collect();
    if selected.is_empty() {
        eprintln!("no scenario matches --only");
        return ExitCode::from(2);
    }
    // Scenarios are independent (each uses fresh users), so they run concurrently: the slow ones
    // are mostly waiting for TTLs to run out.
    let runs = selected.into_iter().map(|s| {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = tokio::time::timeout(Duration::from_secs(120), (s.run)(ctx)).await;
            (s.name, started.elapsed(), outcome)
        })
    });
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for run in futures_util::future::join_all(runs).await {
        let (name, took, outcome) = match run {
            Ok(done) => done,
            Err(err) => {
                println!("FAIL (panicked) {err}");
                failed += 1;
                continue;
            }
        };
        match outcome {
            Ok(Ok(Outcome::Pass)) => {
                passed += 1;
                println!("PASS {name} ({:.1}s)", took.as_secs_f64());
            }
            Ok(Ok(Outcome::Skip(why))) => {
                skipped += 1;
                println!("SKIP {name}: {why}");
            }
            Ok(Err(err)) => {
                failed += 1;
                println!("FAIL {name}: {err:#}");
            }
            Err(_) => {
                failed += 1;
                println!("FAIL {name}: timed out after 120 s");
            }
        }
    }
    println!("scenarios: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
