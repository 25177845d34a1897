//! `auth` / `auth_key_file`: how an instance's adverts are authenticated, and
//! reading the key file (the one file validation reads besides the config).

use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
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

/// `instance "db"` → `db`, for example paths in messages.
fn who_name(who: &str) -> &str {
    who.strip_prefix("instance \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or("NAME")
}

/// A key file holds one line; anything this large is the wrong file.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Reads a key file: mode must be 0600 or stricter; the trimmed text is the key.
fn read_key_file(path: &Path) -> Result<AuthKey, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
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
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
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
