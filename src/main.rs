//! The `fcgi-gateway` binary: parse the command line, set up logging, bind,
//! and hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use fcgi_gateway::cli::{Cli, Command};
use fcgi_gateway::config;
use fcgi_gateway::fpm::embedded::{EmbeddedFpm, FpmError, FpmSettings};
use fcgi_gateway::server::{
    activation, AccessLinesBeside, BareAccessLines, Reload, Server, ThreadStderr,
};
use fcgi_gateway::shutdown;
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
            // Before the runtime starts threads: this edits the environment.
            let inherited = match activation::take_inherited() {
                Ok(sockets) => sockets,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("fcgi-gateway: {e}");
                    return ExitCode::from(2);
                }
            };
            match serve(config, args, inherited) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // php-fpm missing is a message for a person, said once.
                    if e.downcast_ref::<FpmError>().is_none() {
                        tracing::error!("{e:#}");
                    }
                    eprintln!("fcgi-gateway: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Bench(args) => fcgi_gateway::bench::run(args),
        Command::BenchLink(args) => fcgi_gateway::bench::run_link(args),
        Command::Doctor(args) => {
            // Quiet unless asked: RUST_LOG=fcgi_gateway::doctor=debug shows each probe.
            init_tracing("warn");
            fcgi_gateway::doctor::run(args)
        }
        Command::ImportNginx { files } => fcgi_gateway::nginx_import::run(&files),
    }
}

fn init_tracing(level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    // RUST_LOG wins when set, so one module can be turned up without a restart of habits.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Access lines carry their own time and format (combined or JSON): they
    // are printed bare, so each line is exactly that format.
    let access = BareAccessLines::new(ThreadStderr);
    // Colours only for a person at a terminal, never into a file or journal.
    let rest = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(filter)
        .with(AccessLinesBeside::new(access, rest))
        .init();
}

fn serve(
    mut config: config::Config,
    args: config::ServeArgs,
    inherited: Vec<activation::Inherited>,
) -> anyhow::Result<()> {
    // This thread's runtime runs the control side only (signals, reload,
    // the admin listener, php-fpm's supervision): the serving threads
    // (`--workers`) each run their own (`server::workers`).
    let mut runtime = tokio::runtime::Builder::new_current_thread();
    runtime.enable_all();
    let runtime = runtime.build()?;
    runtime.block_on(async move {
        // First: SIGHUP's default action would end the process.
        let hangups = shutdown::hangups();
        // Likewise SIGTERM/SIGINT: from here on they drain instead of killing.
        let stop = shutdown::first_signal();
        let inherited = inherited
            .into_iter()
            .map(activation::Inherited::into_listener)
            .collect::<Result<Vec<_>, _>>()?;
        // Bound first: a taken port fails before php-fpm is started.
        let to_bind = fcgi_gateway::server::addresses_to_bind(&config, &inherited);
        let listeners = fcgi_gateway::server::bind_beside(&to_bind, &config.listen).await?;
        let admin = fcgi_gateway::server::bind_admin(&config).await?;
        // Read before php-fpm starts, so a bad certificate fails fast.
        let tls = fcgi_gateway::server::load_tls(&config)?;
        let file = args.config.clone();
        // The same merge as at start: the file re-read, the flags over it.
        let mut reload = Reload::new(move || config::load(&args), file, hangups);
        let fpm = match (config.upstream.is_empty(), &config.fpm_status_path) {
            (false, _) => None,
            (true, status_path) => {
                let fpm = EmbeddedFpm::start(FpmSettings {
                    bin: config.php_fpm.clone(),
                    children: config.fpm_children,
                    status_path: status_path
                        .clone()
                        .unwrap_or_else(|| config::EMBEDDED_FPM_STATUS_PATH.to_owned()),
                })
                .await?;
                config.upstream = vec![fpm.upstream().into()];
                reload = reload.with_embedded_upstream(fpm.upstream());
                Some(fpm)
            }
        };
        let served = Server::new(config)
            .with_admin(admin)
            .with_tls(tls)
            .with_inherited(inherited)
            .with_reload(reload)
            .run(listeners, stop)
            .await;
        // php-fpm goes last, after in-flight requests have drained.
        if let Some(fpm) = fpm {
            fpm.stop().await;
        }
        served?;
        Ok(())
    })
}
