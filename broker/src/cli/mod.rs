//! The `warrant` command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::exit::Exit;

/// `println!` for Warrant's own output: whatever untrusted text it carries is escaped
/// ([`registry_client::text::for_terminal`]) so that it cannot move or rewrite the terminal.
macro_rules! outln {
    ($($arg:tt)*) => {
        println!("{}", registry_client::text::for_terminal(&format!($($arg)*)))
    };
}

/// `print!`, escaped as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        print!("{}", registry_client::text::for_terminal(&format!($($arg)*)))
    };
}

/// `eprintln!`, escaped as [`outln!`].
macro_rules! errln {
    ($($arg:tt)*) => {
        eprintln!("{}", registry_client::text::for_terminal(&format!($($arg)*)))
    };
}

mod args;
mod attest;
mod audit;
mod context;
mod error;
mod inspect;
mod keygen;
mod policy;
mod pull;
mod push;
mod render;
mod run;
mod serve;
mod sign;
mod verify;

use args::{AskArgs, PolicyAskArgs, TrustArgs};
use context::Context;
use error::CliError;

/// No capability without a warrant: verify signed WebAssembly, decide what it may touch, and
/// run it with exactly that.
#[derive(Debug, Parser)]
#[command(
    name = "warrant",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags accepted before or after any subcommand; each overrides `warrant.toml`.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// The configuration file (default: $WARRANT_CONFIG, else ~/.config/warrant/warrant.toml
    /// if it exists)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The local store, an OCI image-layout directory (default: ~/.local/share/warrant/store)
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// The audit log directory (default: `audit_log` in the config, else
    /// ~/.local/share/warrant/audit)
    #[arg(long, global = true, value_name = "DIR")]
    audit_log: Option<PathBuf>,
    /// The policy directory
    #[arg(long, global = true, value_name = "DIR")]
    policies: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish a .wasm file as a Wasm OCI artifact (to a registry, or to an `oci-layout:DIR:TAG`)
    Push {
        /// The module or component to publish
        file: PathBuf,
        /// Where: `registry/repo:tag` or `oci-layout:DIR[:tag]`
        reference: String,
        /// Publish a `wasi/wasm` image instead of a Wasm artifact: the module in a tar layer,
        /// named by the config's entrypoint, as containerd (`containerd-shim-warrant-v1`) and
        /// Docker run Wasm
        #[arg(long)]
        image: bool,
        /// With `--image`: tag an OCI image index listing the image for platform `wasi/wasm`,
        /// as multi-platform builds publish it
        #[arg(long, requires = "image")]
        index: bool,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Resolve a reference once, fetch the artifact into the store, print its digest
    Pull {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show an artifact's manifest, config, layers and referrers without storing anything
    Inspect {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Generate an ECDSA P-256 key pair: PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub
    Keygen {
        /// Path prefix of the two files (neither may exist)
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Sign an artifact's manifest digest with a key (cosign-compatible `sha256-<hex>.sig`)
    Sign {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        /// The private key (PKCS#8 PEM, as `warrant keygen` writes)
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Attest an artifact: a signed in-toto statement (e.g. SLSA provenance) in `sha256-<hex>.att`
    Attest {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        /// The private key (PKCS#8 PEM)
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The predicate (JSON)
        #[arg(long, value_name = "FILE")]
        predicate: PathBuf,
        /// `slsaprovenance1`, `slsaprovenance` (v0.2), or a predicate type URI
        #[arg(long = "type", value_name = "TYPE")]
        predicate_type: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Verify an artifact's signatures and attestations offline and print the verified facts
    /// (exit 0 when at least one signature verified, and an attestation of every required type,
    /// 122 otherwise)
    Verify {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Require a verified attestation of this type (`slsaprovenance1`, `slsaprovenance`,
        /// or a URI); repeatable
        #[arg(long = "attestation-type", value_name = "TYPE")]
        attestation_types: Vec<String>,
        /// Print the verdict as JSON
        #[arg(long)]
        json: bool,
    },
    /// Verify a Sigstore bundle over a file or a digest, offline (exit 0 verified, 122 not)
    #[command(alias = "verify-bundle")]
    VerifyBlob {
        /// The Sigstore bundle (`.sigstore.json`)
        #[arg(long, value_name = "FILE")]
        bundle: PathBuf,
        /// A public key (PEM) that must have made the signature
        #[arg(long, value_name = "PUB")]
        key: Option<PathBuf>,
        #[command(flatten)]
        identity: args::BlobIdentityArgs,
        /// A Sigstore trusted root (default: the embedded public-good production root)
        #[arg(long, value_name = "FILE")]
        trusted_root: Option<PathBuf>,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
        /// The signed file, or `sha256:<hex>` of it (a digest unless such a file exists)
        file_or_digest: String,
    },
    /// Pull an artifact, verify it, ask the policies for what the run asks, and run it (a WASI
    /// preview 1 command module or a WASI 0.2 command component) with only the granted handles
    Run {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        /// Run only if a signature by one of these verifies
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        asks: AskArgs,
        /// Run without the handles policy denied instead of refusing the run (`instantiate`
        /// must still be allowed; a directory whose `fs.write` is denied is given read-only)
        #[arg(long)]
        drop_denied: bool,
        /// Arguments passed to the guest
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Serve `wasi:http` components, one per tenant of `[[serve.tenant]]` in the config: each
    /// verified against its own signers, granted by policy and compiled before its route takes
    /// traffic; a fresh instance per request (SIGHUP reloads, SIGTERM drains and stops)
    Serve {
        /// Where requests are served (default: `[serve] listen`, else 127.0.0.1:8080; port 0
        /// picks a free port)
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Where `/metrics`, `/healthz` and `/readyz` are served (default: `[serve]
        /// admin_listen`, else not served)
        #[arg(long, value_name = "ADDR")]
        admin_listen: Option<String>,
        /// Load every tenant as serving would, print each verdict and grant, and exit without
        /// listening (0 when every tenant would be served, else the first failure's code)
        #[arg(long)]
        check: bool,
        /// With `--check`: print the result as JSON
        #[arg(long, requires = "check")]
        json: bool,
    },
    /// Print a shell completion script: `warrant completions bash >
    /// /etc/bash_completion.d/warrant` (zsh: into a directory of `$fpath` as `_warrant`; fish:
    /// `~/.config/fish/completions/warrant.fish`)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff), made from this command line's own help: `warrant man |
    /// man -l -`, `warrant man policy suggest | man -l -`; or write every page with `--out`
    Man {
        /// The (sub)command whose page to print (default: `warrant` itself)
        command: Vec<String>,
        /// Write `warrant.1` and a page per subcommand (`warrant-run.1`, …) into this
        /// directory instead, e.g. `/usr/local/share/man/man1`
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        out: Option<PathBuf>,
    },
    /// Cedar policies: check, explain a decision, suggest a policy, run their tests
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit log: verify it, show it, prove records to a third party, print its verifier key
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the log's Merkle tree, check the signature and root of every kept checkpoint
    /// and of the head checkpoint, and name the first bad record or checkpoint (exit 0 intact,
    /// 122 not)
    Verify {
        /// A verifier key file (`warrant-audit+<id>+<key>`, as `audit key` prints); default:
        /// the public half of the log's own key
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the verifier key that checks this log's checkpoints
    Key,
    /// Print the log as a timeline, one line per record (only records the log proves: on a
    /// log that fails verification, the proven records before the failure, then the failure;
    /// exit 122)
    Show {
        /// Only the records about this artifact (`sha256:<hex>`, or a prefix of the hex of at
        /// least 4 characters)
        #[arg(long, value_name = "DIGEST")]
        digest: Option<String>,
        /// Only records from this time on: RFC 3339 (`2026-11-24T14:00:00Z`) or a duration
        /// back from now (`30m`, `1h`, `7d`)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// A verifier key file; default: the public half of the log's own key
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print the records themselves, one canonical JSON record per line
        #[arg(long)]
        json: bool,
    },
    /// Write a self-contained proof: that record N is in the log (`--index N`, against the
    /// smallest kept checkpoint covering it, else the head checkpoint), that the log at
    /// checkpoint size N extends the log at checkpoint size M (`--from M --to N`; kept
    /// checkpoint sizes or the head's), or that it extends a checkpoint kept elsewhere
    /// (`--from-checkpoint FILE [--to N]`, exit 122 if the log no longer does)
    Prove {
        /// The record to prove
        #[arg(long, value_name = "N", required_unless_present_any = ["from", "from_checkpoint"], conflicts_with_all = ["from", "to", "from_checkpoint"])]
        index: Option<u64>,
        /// The earlier checkpoint size
        #[arg(
            long,
            value_name = "M",
            requires = "to",
            conflicts_with = "from_checkpoint"
        )]
        from: Option<u64>,
        /// A checkpoint of this log kept elsewhere (say a head since replaced): its note, or
        /// a proof file whose newest checkpoint is taken
        #[arg(long, value_name = "FILE")]
        from_checkpoint: Option<PathBuf>,
        /// The later checkpoint size (with `--from-checkpoint`, default: the newest)
        #[arg(long, value_name = "N")]
        to: Option<u64>,
        /// Write the proof here (default: standard output)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check a proof written by `audit prove` with nothing but the log's verifier key (exit 0
    /// valid, 122 refused, naming what failed)
    VerifyProof {
        /// The proof file
        file: PathBuf,
        /// The verifier key file (`warrant-audit+<id>+<key>`, as `audit key` prints)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Load and strictly validate the policy directory (`--policies` or `policies` in the
    /// config); exit 0 when valid, 2 naming file, line and policy id otherwise
    Check {
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Verify an artifact, then show what each request would be decided and why (exit 0 when
    /// everything asked is allowed, 123 otherwise)
    Explain {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        asks: PolicyAskArgs,
        /// Print the facts and decisions as JSON
        #[arg(long)]
        json: bool,
    },
    /// Verify an artifact, read what it imports, and write a least-privilege policy for what
    /// the run asks (and the artifact can use), bound to its repository and verified signer,
    /// with test cases; printed, or written to `--out DIR` as `NAME.cedar` and
    /// `tests/NAME.toml`, which the directory's policies must then pass
    Suggest {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        asks: PolicyAskArgs,
        /// Write the policy and its tests into this policy directory (created when missing;
        /// existing files are never replaced)
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// The files' name and the `@id`s' prefix (`[a-z0-9-]`; default: the repository's
        /// last path segment)
        #[arg(long)]
        name: Option<String>,
        /// Print the suggestion as JSON
        #[arg(long)]
        json: bool,
    },
    /// Verify an artifact and compare the policies with it: what they deny of what the run
    /// asks, and what they grant that it cannot use or the run did not ask for (exit 0 when
    /// they agree, 123 otherwise)
    Diff {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        asks: PolicyAskArgs,
        /// Print the rows as JSON
        #[arg(long)]
        json: bool,
    },
    /// Run the test cases in the policy directory's `tests/*.toml` (exit 0 when all pass)
    Test {
        /// Print the results as JSON
        #[arg(long)]
        json: bool,
    },
}

/// Parse the command line, run it, and return the documented exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            }
            .into();
        }
    };
    init_tracing();
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(e) => {
            errln!("warrant: error: {e}");
            e.exit().into()
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // No colour codes, and whatever untrusted text a log line carries escaped on its way out.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| SafeStderr)
        .try_init();
}

/// Standard error for log lines, each escaped ([`registry_client::text::for_terminal`]).
struct SafeStderr;

impl Write for SafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr()
            .lock()
            .write_all(registry_client::text::for_terminal(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// What is made from the command line's definition alone, reading no configuration: a
/// completion script, the manual page.
fn generated(command: &Command) -> Option<Result<Exit, CliError>> {
    use clap::CommandFactory as _;
    use std::io::Write as _;
    let mut out = Vec::new();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "warrant", &mut out);
        }
        Command::Man {
            command,
            out: Some(dir),
        } if command.is_empty() => {
            let written = std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
            return Some(match written {
                Ok(()) => {
                    outln!("wrote the manual pages into {}", dir.display());
                    Ok(Exit::Success)
                }
                Err(e) => Err(CliError::Usage(format!(
                    "cannot write manual pages into `{}`: {e}",
                    dir.display()
                ))),
            });
        }
        Command::Man { command, .. } => {
            let mut page = Cli::command();
            page.build();
            for name in command {
                match page.find_subcommand(name) {
                    Some(sub) => page = sub.clone(),
                    None => {
                        return Some(Err(CliError::Usage(format!(
                            "no command `{}`: `warrant man` takes a command's words, e.g. \
                             `warrant man policy suggest`",
                            command.join(" ")
                        ))));
                    }
                }
            }
            if let Err(e) = clap_mangen::Man::new(page).render(&mut out) {
                return Some(Err(CliError::Internal(format!(
                    "cannot render the manual page: {e}"
                ))));
            }
        }
        _ => return None,
    }
    // Warrant's own text, not an attacker's: written as made.
    Some(
        std::io::stdout()
            .lock()
            .write_all(&out)
            .map(|()| Exit::Success)
            .map_err(|e| CliError::Internal(format!("cannot write to standard output: {e}"))),
    )
}

fn run(cli: Cli) -> Result<Exit, CliError> {
    if let Some(generated) = generated(&cli.command) {
        return generated;
    }
    let ctx = Context::new(&cli.global)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    match cli.command {
        Command::Push {
            file,
            reference,
            image,
            index,
            json,
        } => push::push(&ctx, &runtime, file, reference, (image, index), json),
        Command::Pull { reference, json } => pull::pull(&ctx, &runtime, reference, json),
        Command::Inspect { reference, json } => inspect::inspect(&ctx, &runtime, reference, json),
        Command::Keygen { out } => keygen::keygen(out),
        Command::Sign {
            reference,
            key,
            json,
        } => sign::sign(&ctx, &runtime, reference, key, json),
        Command::Attest {
            reference,
            key,
            predicate,
            predicate_type,
            json,
        } => attest::attest(
            &ctx,
            &runtime,
            reference,
            key,
            predicate,
            predicate_type,
            json,
        ),
        Command::Verify {
            reference,
            trust,
            attestation_types,
            json,
        } => verify::verify(&ctx, &runtime, reference, trust, attestation_types, json),
        Command::VerifyBlob {
            bundle,
            key,
            identity,
            trusted_root,
            json,
            file_or_digest,
        } => verify::verify_blob(
            bundle,
            identity.requirement(key)?,
            trusted_root,
            json,
            file_or_digest,
        ),
        Command::Run {
            reference,
            trust,
            asks,
            drop_denied,
            args,
        } => run::run(&ctx, runtime, reference, trust, asks, drop_denied, args),
        Command::Audit { command } => audit::audit(&ctx, command),
        Command::Policy { command } => policy::policy(&ctx, &runtime, command),
        // Answered by `generated` before any configuration is read.
        Command::Completions { .. } | Command::Man { .. } => Ok(Exit::Success),
        Command::Serve {
            listen,
            admin_listen,
            check,
            json,
        } => {
            // The server runs on a multi-threaded runtime of its own.
            drop(runtime);
            serve::serve(&ctx, listen, admin_listen, check, json)
        }
    }
}

fn read_input(path: &Path, limit: u64) -> Result<Vec<u8>, CliError> {
    let meta = std::fs::metadata(path).map_err(|source| CliError::Input {
        path: path.to_owned(),
        source,
    })?;
    if meta.len() > limit {
        return Err(CliError::Usage(format!(
            "`{}` is {} bytes; the module limit is {limit}",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read(path).map_err(|source| CliError::Input {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_are_accepted_before_and_after_the_subcommand() {
        let before = Cli::try_parse_from(["warrant", "--store", "/s", "pull", "x/y:z"]).unwrap();
        let after = Cli::try_parse_from(["warrant", "pull", "x/y:z", "--store", "/s"]).unwrap();
        assert_eq!(before.global.store, after.global.store);
        assert_eq!(after.global.store.as_deref(), Some(Path::new("/s")));
    }
}
