//! The `fcgi-gateway` binary: parse the command line, set up logging, bind,
//! and hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use fcgi_gateway::config::{self, Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match config::check_file(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fcgi-gateway: {e}");
                ExitCode::from(1)
            }
        },
        Command::Serve(args) => {
            let config = match config::load(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("fcgi-gateway: {e}");
                    return ExitCode::from(2);
                }
            };
            init_tracing(&config.log_level);
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("fcgi-gateway: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Bench(args) => fcgi_gateway::bench::run(args),
    }
}

fn init_tracing(level: &str) {
    // RUST_LOG wins when set, so one module can be turned up without a restart of habits.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn serve(config: config::Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listeners = fcgi_gateway::server::bind(&config.listen).await?;
        fcgi_gateway::server::run(config, listeners, fcgi_gateway::shutdown::first_signal())
            .await?;
        Ok(())
    })
}
