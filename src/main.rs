//! The `roost` binary: command line, logging, start the listeners, reload on SIGHUP, shut down
//! on SIGINT/SIGTERM.

/// mimalloc, not glibc: measured in docs/decisions.md ("Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use roost::Server;
use roost::config::Config;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

/// Roost, an MQTT 3.1 / 3.1.1 / 5.0 broker.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML). Every key is documented in config/roost.toml.
    #[arg(short, long, default_value = "config/roost.toml")]
    config: PathBuf,
    /// Overrides the port of the first listener (0 picks a free port).
    #[arg(short, long)]
    port: Option<u16>,
    /// Overrides `persistence.dir`, the store's directory.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Prints the SCRAM-SHA-256 credential (a random salt, 4096 iterations) of a password read
    /// from the terminal without echo, or from standard input, for `auth.scram_users`, and
    /// exits. The password itself is never stored.
    #[arg(long)]
    scram_credential: bool,
    /// The password for --scram-credential, for scripts. Visible to other users in `ps`:
    /// prefer the prompt or standard input.
    #[arg(long, requires = "scram_credential")]
    password: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// What `roost` does other than serve.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Adds or updates USER in the Mosquitto-format password FILE (created if missing, mode
    /// 0600), or deletes USER with -D. The password is read from the terminal without echo, or
    /// from standard input when it is not a terminal.
    Passwd {
        /// The password file (`auth.password_file`).
        file: PathBuf,
        /// The user name.
        user: String,
        /// Delete USER instead.
        #[arg(short = 'D', long)]
        delete: bool,
        /// The password, for scripts. Visible to other users in `ps`: prefer the prompt or
        /// standard input.
        #[arg(long)]
        password: Option<String>,
    },
    /// Writes development certificates into DIR: a CA (ca.pem), a server certificate for
    /// localhost and 127.0.0.1 (server.pem, server.key) and a client certificate (client.pem,
    /// client.key). For development and tests only.
    Certs {
        /// Where to write them (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The client certificate's Common Name (the user name where a listener has
        /// use_identity_as_username).
        #[arg(long, default_value = "roost-client")]
        client_name: String,
        /// The keys: ecdsa (P-256) or rsa (2048 bits).
        #[arg(long, default_value = "ecdsa")]
        key_type: KeyTypeArg,
    },
    /// Inspects the store of `persistence.dir` (from --config, or --data-dir).
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
}

/// `roost store ...`.
#[derive(clap::Subcommand, Debug)]
enum StoreAction {
    /// Opens the store and decodes every record: says what it holds, or what is wrong with it.
    Check,
    /// Writes every record to FILE, one JSON object per line (the record as stored, and what
    /// it says), to inspect or rescue a store. The broker must not be running on it.
    Export {
        /// Where to write (replaced if it exists).
        file: PathBuf,
    },
    /// Adds every record of FILE (as `export` writes it) to the store, made if missing,
    /// replacing records with the same key. The broker must not be running on it.
    Import {
        /// The JSON lines to read.
        file: PathBuf,
    },
}

/// `roost certs --key-type`.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum KeyTypeArg {
    Ecdsa,
    Rsa,
}

fn main() -> std::process::ExitCode {
    disable_transparent_huge_pages();
    match start(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line that names the key and the fix; no backtrace for a user's mistake.
            eprintln!("roost: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Opts the broker out of transparent huge pages (docs/decisions.md, "No transparent huge pages for the broker"): its heap
/// grows by about a KiB per connection, and 2 MiB pages zeroed on first touch stalled
/// handshakes (10 % of the broker's time while 18,000 clients connected) and held up to 2 MiB
/// more than was in use.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // The result is ignored: a kernel without THP or a sandbox that forbids prctl leaves
        // nothing to turn off or nothing we may change, and the broker works the same.
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
        let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

fn start(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::Passwd {
            file,
            user,
            delete,
            password,
        }) => return passwd(&file, &user, delete, password),
        Some(Command::Certs {
            out,
            client_name,
            key_type,
        }) => {
            let keys = match key_type {
                KeyTypeArg::Ecdsa => roost::certs::KeyType::EcdsaP256,
                KeyTypeArg::Rsa => roost::certs::KeyType::Rsa2048,
            };
            let files = roost::certs::write_dev_certs(&out, &client_name, keys)
                .with_context(|| format!("cannot write certificates into {}", out.display()))?;
            for f in files {
                println!("{}", f.display());
            }
            println!("development certificates: do not use them for a real deployment");
            return Ok(());
        }
        Some(Command::Store { action }) => {
            let dir = match &args.data_dir {
                Some(dir) => dir.clone(),
                None => Config::from_file(&args.config)?.persistence.dir,
            };
            let said = match action {
                StoreAction::Check => roost::store::check(&dir)?,
                StoreAction::Export { file } => roost::store::export(&dir, &file)?,
                StoreAction::Import { file } => roost::store::import(&dir, &file)?,
            };
            println!("{said}");
            return Ok(());
        }
        None => {}
    }
    if args.scram_credential {
        let password = read_password(args.password)?;
        let credential = roost::ScramCredentials::generate(&password, 4096)
            .context("cannot make a SCRAM credential")?;
        println!("{credential}");
        return Ok(());
    }
    // The error names the file and the key.
    let mut config = Config::from_file(&args.config)?;
    if let Some(dir) = args.data_dir {
        config.persistence.dir = dir;
    }
    if let Some(port) = args.port {
        // validate() guarantees at least one listener.
        if let Some(first) = config.listeners.first_mut() {
            first.bind.set_port(port);
        }
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .with_context(|| format!("log.level: {:?} is not a valid filter", config.log.level))?;
    // Colour only on a terminal: a log file or a CI log gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
    // Before the runtime's threads start: a table grown later stalls accepts (fd_table.rs).
    let fds = roost::fd_table::prepare();
    tracing::debug!(
        "open-file limit {} (was {}); descriptor table sized for {}",
        fds.limit,
        fds.limit_before,
        fds.reserved
    );
    roost::runtime::build()
        .context("cannot start the tokio runtime")?
        .block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Handlers first: a SIGINT that arrives as soon as the listener is up (a test, a script)
    // must shut down gracefully, not kill the process by the default action.
    let mut signals = Signals::install()?;
    let server = Server::start(config).await?;
    while let Signal::Reload = signals.wait().await {
        tracing::info!("SIGHUP: reloading");
        server.reload();
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP, caught from the moment they are installed.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

/// What a signal asks for.
enum Signal {
    Stop,
    Reload,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            hup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        })
    }

    /// Until one arrives.
    async fn wait(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::Stop,
            _ = self.term.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

/// `roost passwd`: sets or deletes a user in a password file.
fn passwd(
    file: &std::path::Path,
    user: &str,
    delete: bool,
    password: Option<String>,
) -> anyhow::Result<()> {
    if delete {
        let removed = roost::passwords::delete_user(file, user)
            .with_context(|| format!("{}", file.display()))?;
        anyhow::ensure!(removed, "{}: no user {user:?}", file.display());
        return Ok(());
    }
    let password = read_password(password)?;
    roost::passwords::set_password(file, user, &password)
        .with_context(|| format!("{}", file.display()))
}

/// The password given for a script, else one typed twice at a prompt without echo, else the
/// first line of standard input when it is not a terminal. Never empty.
fn read_password(given: Option<String>) -> anyhow::Result<String> {
    let password = match given {
        Some(p) => p,
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            let first = rpassword::prompt_password("Password: ")?;
            let again = rpassword::prompt_password("Reenter password: ")?;
            anyhow::ensure!(first == again, "the passwords do not match");
            first
        }
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\n', '\r']).to_owned()
        }
    };
    anyhow::ensure!(!password.is_empty(), "empty password");
    Ok(password)
}
