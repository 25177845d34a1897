//! The commands that neither run nor talk to the daemon: `vipd keygen`,
//! `vipd import-keepalived` and the hidden `vipd generate-assets DIR`, which the
//! package build runs to write the man pages and shell completions.
//!
//! Each is a thin edge over a library module ([`vipd::keygen`], [`vipd::import`],
//! [`vipd::manual`]): arguments in, text out, an exit code.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use vipd::import;
use vipd::keygen;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
The key is created with mode 0600 in one step (O_CREAT|O_EXCL), never overwriting an
existing file. Run it on one node and copy the file to the others, e.g.
  vipd keygen /etc/vipd/db.key && scp -p /etc/vipd/db.key db2:/etc/vipd/db.key")]
pub(crate) struct KeygenArgs {
    /// Where to write the key (default: stdout).
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Writes the TOML to stdout and, on stderr, one line FILE:LINE: what and why for everything
not carried over or changed (LVS, SMTP alerts, use_vmac, passwords, ...).
The output is for one host: it takes the keepalived.conf lines marked @HOST for it (and
@^HOST for the others) and, when router_id is missing or LVS_DEVEL, its name as the node
name. Run it once per node, with --host for each.
With --join the output joins the keepalived nodes instead of replacing them all at once:
VRRP on the wire (vipd check warns what that gives up: no HMAC, no replay guard).
Exit codes: 0 everything was carried over; 3 something was left out (see stderr);
2 the file cannot be read or parsed (FILE:LINE: message).")]
pub(crate) struct ImportArgs {
    /// The keepalived configuration, e.g. /etc/keepalived/keepalived.conf.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The host to convert for, as keepalived's config-id (`keepalived -i NAME`).
    /// Default: this machine's hostname up to its first dot, as keepalived's.
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Join the running keepalived cluster as it is: the instances speak VRRP
    /// (protocol = "vrrp2"/"vrrp3") with keepalived's VRIDs, priorities,
    /// intervals and passwords, instead of vipd's own protocol.
    #[arg(long)]
    join: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// Directory to write man/ (vipd.8, vipd-*.8, vipd.toml.5) and completions/ into.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// `vipd keygen [PATH]`.
pub(crate) fn keygen(args: &KeygenArgs) -> ExitCode {
    let result = match &args.path {
        Some(path) => keygen::write_new_key(path),
        None => keygen::new_key_text().map(|text| print!("{text}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vipd keygen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `vipd import-keepalived [--host NAME] FILE`: exit 0 (all carried over;
/// advice may be printed), 3 (something left out or changed) or 2
/// (unparsable, or no host name).
pub(crate) fn import_keepalived(args: &ImportArgs) -> ExitCode {
    let host = match &args.host {
        Some(host) => host.clone(),
        None => match nix::unistd::gethostname().map(|name| name.into_string()) {
            Ok(Ok(name)) => import::config_id_of(&name).to_owned(),
            _ => String::new(),
        },
    };
    if host.is_empty() {
        eprintln!("vipd import-keepalived: no host name (the hostname cannot be read); give one with --host NAME");
        return ExitCode::from(2);
    }
    let options = import::Options {
        host,
        join: args.join,
    };
    match import::convert_file(&args.file, &options) {
        Ok(conversion) => {
            print!("{}", conversion.toml);
            for note in &conversion.notes {
                eprintln!("{note}");
            }
            if conversion.notes.iter().all(|n| n.advice) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `vipd generate-assets DIR`: the man pages and completions the package ships.
pub(crate) fn generate_assets<C: CommandFactory>(args: &GenerateArgs) -> ExitCode {
    match write_assets(C::command(), &args.dir) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vipd generate-assets: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_assets(command: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let man_dir = dir.join("man");
    let completions_dir = dir.join("completions");
    for d in [&man_dir, &completions_dir] {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for (name, page) in vipd::manual::command_man_pages(&command)? {
        files.push((man_dir.join(name), page));
    }
    files.push((
        man_dir.join("vipd.toml.5"),
        vipd::manual::config_man_page().into_bytes(),
    ));
    for (shell, name) in [
        (clap_complete::Shell::Bash, "vipd"),
        (clap_complete::Shell::Zsh, "_vipd"),
        (clap_complete::Shell::Fish, "vipd.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut command.clone(), "vipd", &mut text);
        files.push((completions_dir.join(name), text));
    }
    let mut written = Vec::new();
    for (path, bytes) in files {
        let mut file =
            fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(&bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
