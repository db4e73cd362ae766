//! `wsgate-bench`: the load tool. It speaks the protocol like a real client (REST login, ticket,
//! upgrade, `auth` frame) against a wsgate on the loopback and prints, per run, a table and exactly one
//! line of JSON (the only output line starting with `{`).
//!
//! Workloads: `handshake`, `fanout` (optionally with `--login-storm`), `idle`, `login`; `report`
//! summarizes saved JSON lines against the targets, `chart` draws them as SVG cost curves. With `--server-pid` the server's CPU time and RSS
//! are read from /proc, giving server CPU per handshake and per delivered frame.
//!
//! Every loop is bounded in count and in time. Only 127.0.0.0/8 is ever contacted: sockets are opened
//! from 127.0.0.1..=127.0.0.N (`--source-ips`) to spread them over source addresses.
//!
//! See docs/benchmarks.md for the method and scripts/bench.sh for the standard set.

#[path = "../bench/chart.rs"]
mod chart;
#[path = "../bench/common.rs"]
mod common;
#[path = "../bench/fanout.rs"]
mod fanout;
#[path = "../bench/fleet.rs"]
mod fleet;
#[path = "../bench/handshake.rs"]
mod handshake;
#[path = "../bench/idle.rs"]
mod idle;
#[path = "../bench/login.rs"]
mod login;
#[path = "../bench/report.rs"]
mod report;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "wsgate-bench",
    about = "Load tool for wsgate: handshake, fanout, idle and login workloads",
    after_help = "Each run prints a table and one JSON line. See docs/benchmarks.md."
)]
struct Cli {
    /// The server (loopback only), e.g. http://127.0.0.1:8080.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's pid: read its CPU time and RSS from /proc. Several, comma-separated (a
    /// cluster's nodes): their CPU is summed.
    #[arg(long, global = true, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// The workload's helper processes (a database, Redis, nginx), comma-separated: their CPU is
    /// reported on its own and not counted as other processes' (noise).
    #[arg(long, global = true, value_delimiter = ',')]
    helper_pid: Vec<u32>,
    /// More nodes of a cluster, comma-separated URLs: sockets are opened on `--url` and these in
    /// turn (round robin), to drive a cluster directly rather than through its load balancer.
    #[arg(long, global = true, value_delimiter = ',')]
    nodes: Vec<String>,
    /// Open sockets from 127.0.0.1 ..= 127.0.0.N, rotating.
    #[arg(long, global = true, default_value_t = 50)]
    source_ips: u8,
    /// Read buffer of each client socket, bytes.
    #[arg(long, global = true, default_value_t = 4096)]
    read_buffer: usize,
    /// Runtime worker threads (default: the CPUs this process may run on).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// How the client closes sockets: `reply` waits for the server's close frame (RFC 6455, what
    /// browsers do); `send` sends a close frame and drops the connection.
    #[arg(long, global = true, value_enum, default_value_t = common::CloseMode::Reply)]
    close: common::CloseMode,
    /// A name for this run, copied into the JSON (scripts/bench.sh uses it to match targets).
    #[arg(long, global = true)]
    label: Option<String>,
    /// Exit with status 1 if anything failed (a failure, a missing delivery, a socket not opened).
    #[arg(long, global = true)]
    check: bool,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand, Debug)]
enum Workload {
    /// C workers × K full cycles: mint ticket → upgrade → auth → auth_ok → close.
    Handshake(handshake::Args),
    /// N sockets in one room, S senders at a total rate R or window-bound full rate.
    Fanout(fanout::Args),
    /// Open N authenticated sockets and hold them (server RSS per socket).
    Idle(idle::Args),
    /// Login throughput (bcrypt-bound).
    Login(login::Args),
    /// Summarize JSON lines of earlier runs (files), with the targets of labelled runs.
    Report {
        /// Files holding the runs' output.
        files: Vec<std::path::PathBuf>,
        /// Exit with status 1 unless every target is met.
        #[arg(long)]
        strict: bool,
    },
    /// Draw the SVG cost curves of saved JSON lines (files) into a directory.
    Chart {
        /// Files holding the runs' output.
        files: Vec<std::path::PathBuf>,
        /// Where the SVG files go.
        #[arg(long, default_value = "docs/bench")]
        out: std::path::PathBuf,
        /// The line under every chart: the machine and the commit measured.
        #[arg(long, default_value = "")]
        footnote: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Workload::Report { files, strict } = &cli.workload {
        return match report::run(files) {
            Ok(met) if met || !*strict => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(err) => {
                eprintln!("wsgate-bench report: {err:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Workload::Chart {
        files,
        out,
        footnote,
    } = &cli.workload
    {
        return match chart::run(files, out, footnote) {
            Ok(written) => {
                for path in written {
                    println!("chart: {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("wsgate-bench chart: {err:#}");
                ExitCode::from(2)
            }
        };
    }
    common::set_helpers(&cli.helper_pid);
    let (nofile, nofile_max) = common::raise_nofile();
    let threads = cli.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("wsgate-bench: runtime: {err}");
            return ExitCode::from(2);
        }
    };
    common::base();
    let result = runtime.block_on(async {
        let target = Arc::new(common::Target::new(
            &cli.url,
            &cli.nodes,
            cli.source_ips,
            cli.read_buffer,
            cli.close,
        )?);
        for &pid in &cli.server_pid {
            common::sample(pid)?;
        }
        let pid = cli.server_pid.as_slice();
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (mut json, clean) = match &cli.workload {
            Workload::Handshake(args) => handshake::run(target.clone(), args, pid).await?,
            Workload::Fanout(args) => fanout::run(target.clone(), args, pid).await?,
            Workload::Idle(args) => idle::run(target.clone(), args, pid).await?,
            Workload::Login(args) => login::run(target.clone(), args, pid).await?,
            Workload::Report { .. } | Workload::Chart { .. } => unreachable!("handled above"),
        };
        json["label"] = json!(cli.label);
        json["clean"] = json!(clean);
        json["started_unix"] = json!(started);
        json["client"] = json!({
            "threads": threads,
            "source_ips": target.source_count(),
            "nofile": nofile,
            "nofile_max": nofile_max,
            "read_buffer": cli.read_buffer,
            "rss_kb_end": common::self_rss_kb(),
        });
        json["server_pid"] = json!(pid);
        json["nodes"] = json!(target.node_count());
        anyhow::Ok((json, clean))
    });
    // Socket tasks still closing must not hold the process.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok((json, clean)) => {
            println!("{json}");
            if cli.check && !clean {
                eprintln!("wsgate-bench: the run was not clean (see failures above)");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("wsgate-bench: {err:#}");
            ExitCode::from(2)
        }
    }
}
