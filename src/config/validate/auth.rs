//! `auth` / `auth_key_file` / `auth_accept_key_files`: how an instance's adverts
//! are authenticated, and reading the key files (the only files validation reads
//! besides the config).

use std::io::Read as _;
use std::ops::Range;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt};
use std::path::Path;

use toml::Spanned;

use super::Validator;
use crate::config::defaults;
use crate::wire::{Auth, AuthKey};

impl Validator<'_> {
    /// The instance's authentication: an explicit choice of exactly one of
    /// `auth = "none"` and `auth_key_file`.
    pub(super) fn auth(
        &mut self,
        who: &str,
        table: &Range<usize>,
        key_file: Option<Spanned<String>>,
        auth: Option<Spanned<String>>,
    ) -> Option<Auth> {
        if let Some(auth) = &auth {
            if auth.get_ref() != "none" {
                self.problem(
                    auth.span(),
                    format!("{who}: auth {:?} is not valid; valid: \"none\", or remove it and set auth_key_file", auth.get_ref()),
                );
                return None;
            }
        }
        match (key_file, auth) {
            (None, None) => {
                self.problem(
                    table.clone(),
                    format!("{who}: authentication must be an explicit choice; valid: auth_key_file = \"/etc/vipd/{}.key\" (at least {} bytes, e.g. from `openssl rand -hex 32`) or auth = \"none\"", who_name(who), defaults::MIN_KEY_LEN),
                );
                None
            }
            (Some(_), Some(auth)) => {
                self.problem(
                    auth.span(),
                    format!("{who}: both auth = \"none\" and auth_key_file are set; valid: exactly one of them"),
                );
                None
            }
            (None, Some(_)) => Some(Auth::None),
            (Some(file), None) => {
                let span = file.span();
                let path = self.base_dir().join(file.into_inner());
                match read_key_file(&path) {
                    Ok(key) => Some(Auth::HmacSha256(key)),
                    Err(why) => {
                        self.problem(
                            span,
                            format!("{who}: auth_key_file {}: {why}", path.display()),
                        );
                        None
                    }
                }
            }
        }
    }
}

impl Validator<'_> {
    /// `auth_accept_key_files`: verify-only keys for a rotation, each read and checked
    /// like `auth_key_file`. Needs HMAC (`auth_key_file`); `auth` is the instance's
    /// validated choice (`None` when that failed, and then only the files are checked).
    pub(super) fn accept_keys(
        &mut self,
        who: &str,
        files: Option<Spanned<Vec<Spanned<String>>>>,
        auth: Option<&Auth>,
    ) -> Option<Vec<AuthKey>> {
        let Some(files) = files else {
            return Some(Vec::new());
        };
        let list_span = files.span();
        let files = files.into_inner();
        if matches!(auth, Some(Auth::None)) && !files.is_empty() {
            self.problem(
                list_span,
                format!("{who}: auth_accept_key_files needs auth_key_file (HMAC); with auth = \"none\" nothing is verified; valid: remove auth_accept_key_files, or set auth_key_file instead of auth = \"none\""),
            );
            return None;
        }
        if files.len() > MAX_ACCEPT_KEYS {
            self.problem(
                list_span,
                format!("{who}: auth_accept_key_files lists {} files; valid: at most {MAX_ACCEPT_KEYS} (a rotation needs one: the key being retired or the one coming)", files.len()),
            );
            return None;
        }
        let mut keys = Vec::with_capacity(files.len());
        let mut ok = true;
        for file in files {
            let span = file.span();
            let path = self.base_dir().join(file.into_inner());
            match read_key_file(&path) {
                Ok(key) => keys.push(key),
                Err(why) => {
                    ok = false;
                    self.problem(
                        span,
                        format!("{who}: auth_accept_key_files {}: {why}", path.display()),
                    );
                }
            }
        }
        ok.then_some(keys)
    }
}

/// Every advert is checked against the signing key and each accepted key, so a
/// flood of junk costs `1 + accepted` HMACs per datagram: keep that small.
const MAX_ACCEPT_KEYS: usize = 3;

/// `instance "db"` → `db`, for example paths in messages.
fn who_name(who: &str) -> &str {
    who.strip_prefix("instance \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or("NAME")
}

/// A key file holds one line; anything this large is the wrong file.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Reads a key file. The checks are made on the opened file (`fstat` of the
/// descriptor that is then read), i.e. on the final file after any symlinks,
/// so a link cannot point them at one file and the read at another: a regular
/// file of at most [`MAX_KEY_FILE_LEN`] bytes, mode 0600 or stricter, owned by
/// root or by the user vipd runs as (see [`owner_problem`]); the trimmed text
/// is the key.
fn read_key_file(path: &Path) -> Result<AuthKey, String> {
    // O_NONBLOCK: opening a FIFO put in the key file's place must not hang
    // the daemon; it is refused below as not a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file; valid: a file holding the key".into());
    }
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(format!(
            "is {} bytes long; valid: a file holding one key of at most {MAX_KEY_FILE_LEN} bytes",
            meta.len()
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o} gives access to group or others; valid: readable by its owner only; fix: chmod 600 {}",
            path.display()
        ));
    }
    if let Some(problem) = owner_problem(meta.uid(), nix::unistd::geteuid().as_raw()) {
        return Err(format!(
            "{}{problem}; fix: chown root {}",
            link_note(path),
            path.display()
        ));
    }
    let mut text = String::new();
    (&file)
        .take(MAX_KEY_FILE_LEN)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    let key = text.trim();
    // The length rule is the wire's (`AuthKey::new`); the message says how to fix it.
    AuthKey::new(key.as_bytes().to_vec()).map_err(|_| {
        format!(
            "the key is {} bytes long after trimming whitespace; valid: at least {} bytes, e.g. `openssl rand -hex 32 > {}`",
            key.len(),
            defaults::MIN_KEY_LEN,
            path.display()
        )
    })
}

/// Whose key file vipd accepts: root's, or its own user's (a daemon run as a
/// dedicated user owns its key). A file another user owns is that user's
/// secret to change: whoever can rewrite the key can sign adverts that move
/// the VIP. `None` when `owner` may own it, else what is wrong.
fn owner_problem(owner: u32, daemon_uid: u32) -> Option<String> {
    if owner == 0 || owner == daemon_uid {
        return None;
    }
    let expected = if daemon_uid == 0 {
        "root (uid 0), the user vipd runs as".to_owned()
    } else {
        format!("root (uid 0) or uid {daemon_uid}, the user vipd runs as")
    };
    Some(format!(
        "is owned by uid {owner}; valid: owned by {expected}, since whoever owns the key can change it"
    ))
}

/// Where `path` leads when that is another file (through symlinks): the file
/// the checks were made on, for messages; empty otherwise.
fn link_note(path: &Path) -> String {
    match std::fs::canonicalize(path) {
        Ok(real) if real != path => format!("leads to {}, which ", real.display()),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::PathBuf;

    use crate::config::{self, ConfigError};

    const KEY: &str = "vipd-unit-key-0123456789abcdef";

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vipd-accept-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn key(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.display().to_string()
    }

    /// Line 8 holds the auth choice, line 9 the accepted keys.
    fn text(auth: &str, accept: &str) -> String {
        format!("[node]\nname = \"n1\"\n[[instance]]\nname = \"db\"\ninterface = \"eth0\"\ngroup = 1\npriority = 100\n{auth}\n{accept}\nvips = [\"10.0.0.1/24\"]\n")
    }

    fn errors(text: &str) -> Vec<(usize, usize, String)> {
        match config::from_toml(text, std::path::Path::new("/x/vipd.toml")) {
            Err(ConfigError::Invalid(errors)) => errors
                .iter()
                .map(|d| (d.location.line, d.location.column, d.message.clone()))
                .collect(),
            other => panic!("expected diagnostics, got {other:?}"),
        }
    }

    #[test]
    fn accepted_keys_load_and_count_in_reload_equality() {
        let d = dir("ok");
        let sign = key(&d, "sign.key", KEY, 0o600);
        let next = key(&d, "next.key", &format!(" {KEY}-next\n"), 0o400);
        let auth = format!("auth_key_file = {sign:?}");
        let with = config::from_toml(
            &text(&auth, &format!("auth_accept_key_files = [{next:?}]")),
            std::path::Path::new("/x/vipd.toml"),
        )
        .unwrap();
        assert_eq!(with.instances[0].auth_accept.len(), 1);
        assert_eq!(with.instances[0].auth_accept[0].len(), KEY.len() + 5);
        let without =
            config::from_toml(&text(&auth, ""), std::path::Path::new("/x/vipd.toml")).unwrap();
        assert!(without.instances[0].auth_accept.is_empty());
        assert_ne!(with, without, "a reload must see the change");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn accepted_keys_are_checked_like_the_signing_key() {
        let d = dir("bad");
        let sign = key(&d, "sign.key", KEY, 0o600);
        let short = key(&d, "short.key", "too-short\n", 0o600);
        let open = key(&d, "open.key", KEY, 0o644);
        let auth = format!("auth_key_file = {sign:?}");
        let accept = format!("auth_accept_key_files = [{short:?}, {open:?}]");
        let found = errors(&text(&auth, &accept));
        assert_eq!(found.len(), 2, "{found:?}");
        // Each problem points at its own entry of the list.
        assert_eq!((found[0].0, found[0].1), (9, 26), "{found:?}");
        assert!(found[0].2.contains("9 bytes long"), "{found:?}");
        assert!(found[0].2.contains("at least 16 bytes"), "{found:?}");
        assert_eq!(found[1].0, 9, "{found:?}");
        assert_eq!(found[1].1, 26 + short.len() + 4, "{found:?}");
        assert!(found[1].2.contains("chmod 600"), "{found:?}");
        let missing = format!("auth_accept_key_files = [{:?}]", d.join("absent.key"));
        let found = errors(&text(&auth, &missing));
        assert!(found[0].2.contains("cannot read"), "{found:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn key_files_of_root_or_the_daemons_user_only() {
        use super::owner_problem;
        assert_eq!(owner_problem(0, 0), None);
        assert_eq!(owner_problem(0, 998), None, "root's file, vipd as uid 998");
        assert_eq!(owner_problem(998, 998), None, "vipd's own file");
        let other = owner_problem(65534, 0).expect("another user's file");
        assert_eq!(
            other,
            "is owned by uid 65534; valid: owned by root (uid 0), the user vipd runs as, since whoever owns the key can change it"
        );
        let other = owner_problem(1000, 998).expect("another user's file");
        assert!(
            other.contains("uid 1000") && other.contains("root (uid 0) or uid 998"),
            "{other}"
        );
    }

    #[test]
    fn a_fifo_in_place_of_a_key_file_is_refused_without_hanging() {
        let d = dir("fifo");
        let fifo = d.join("k.key");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let found = errors(&text(
            &format!("auth_key_file = {:?}", fifo.display().to_string()),
            "",
        ));
        assert!(found[0].2.contains("is not a regular file"), "{found:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn accepted_keys_need_hmac_and_stay_few() {
        let d = dir("none");
        let k = key(&d, "k.key", KEY, 0o600);
        let found = errors(&text(
            "auth = \"none\"",
            &format!("auth_accept_key_files = [{k:?}]"),
        ));
        assert_eq!((found[0].0, found[0].1), (9, 25), "{found:?}");
        assert!(found[0].2.contains("needs auth_key_file"), "{found:?}");
        let four = format!("auth_accept_key_files = [{k:?}, {k:?}, {k:?}, {k:?}]");
        let found = errors(&text(&format!("auth_key_file = {k:?}"), &four));
        assert!(found[0].2.contains("at most 3"), "{found:?}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
