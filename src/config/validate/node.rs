//! `[node]`: the node's name and id, the control socket, the state directory and
//! the start-up delay.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::Validator;
use crate::config::raw::RawNode;
use crate::config::system::hostname;
use crate::config::types::Sources;
use crate::config::{defaults, NodeConfig};
use crate::wire::MAX_NAME_LEN;

const WHO: &str = "[node]";

impl Validator<'_> {
    pub(super) fn node(
        &mut self,
        raw: Option<Spanned<RawNode>>,
        sources: &mut Sources,
    ) -> Option<NodeConfig> {
        let (node_span, raw) = match raw {
            Some(raw) => (raw.span(), raw.into_inner()),
            None => (0..0, RawNode::default()),
        };
        let name = self.node_name(node_span, raw.name);
        let control_socket = self.absolute_path(
            "control_socket",
            raw.control_socket,
            defaults::CONTROL_SOCKET,
        );
        let state_dir = self.absolute_path("state_dir", raw.state_dir, defaults::STATE_DIR);
        let control_group = self.control_group(raw.control_group, sources);
        let startup_delay = self.duration_in(
            WHO,
            "startup_delay",
            raw.startup_delay.as_ref(),
            defaults::STARTUP_DELAY,
            Duration::ZERO,
            Duration::from_secs(600),
        );
        let metrics_listen = self.metrics_listen(raw.metrics_listen);
        let script_user = self.user_name(WHO, "script_user", raw.script_user);
        let etcd = self.etcd(raw.etcd);

        let name = name?;
        Some(NodeConfig {
            node_id: node_id(&name),
            name,
            control_socket: control_socket?,
            control_group: control_group?,
            state_dir: state_dir?,
            startup_delay: startup_delay?,
            metrics_listen: metrics_listen?,
            script_user: script_user?,
            etcd: etcd?,
        })
    }

    /// `metrics_listen`: `Some(None)` when left out (no metrics endpoint).
    fn metrics_listen(
        &mut self,
        raw: Option<Spanned<String>>,
    ) -> Option<Option<std::net::SocketAddr>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let span = raw.span();
        let text = raw.into_inner();
        match text.parse::<std::net::SocketAddr>() {
            Ok(addr) if addr.port() != 0 => Some(Some(addr)),
            _ => {
                self.problem(
                    span,
                    format!("{WHO}: metrics_listen {text:?} is not an address and port; valid: e.g. \"127.0.0.1:9650\" or \"[::1]:9650\" (port 1..=65535), or leave it out for no metrics endpoint"),
                );
                None
            }
        }
    }

    /// `name`, or the hostname when it is left out.
    fn node_name(
        &mut self,
        node_span: Range<usize>,
        raw: Option<Spanned<String>>,
    ) -> Option<String> {
        if let Some(raw) = raw {
            let span = raw.span();
            let name = raw.into_inner();
            return match check_node_name(&name) {
                Ok(()) => Some(name),
                Err(why) => {
                    self.problem(
                        span,
                        format!("{WHO}: name {name:?} {why}; valid: {}", node_name_rule()),
                    );
                    None
                }
            };
        }
        match hostname() {
            Ok(name) if check_node_name(&name).is_ok() => Some(name),
            Ok(name) => {
                self.problem(
                    node_span,
                    format!("{WHO}: name is not set and the hostname {name:?} cannot be used as one; set name = \"...\" ({})", node_name_rule()),
                );
                None
            }
            Err(why) => {
                self.problem(
                    node_span,
                    format!("{WHO}: name is not set and the hostname cannot be read ({why}); set name = \"...\""),
                );
                None
            }
        }
    }

    fn absolute_path(
        &mut self,
        key: &str,
        raw: Option<Spanned<String>>,
        default: &str,
    ) -> Option<PathBuf> {
        let Some(raw) = raw else {
            return Some(PathBuf::from(default));
        };
        let span = raw.span();
        let path = PathBuf::from(raw.into_inner());
        if path.is_absolute() {
            Some(path)
        } else {
            self.problem(
                span,
                format!("{WHO}: {key} {:?} is not an absolute path; valid: an absolute path such as {default:?}", path.display().to_string()),
            );
            None
        }
    }

    /// A user name (`script_user`, a hook's or script's `user`): `Some(None)`
    /// when left out. Whether the user exists is the system check's business
    /// (`config::check_against_system`): the file may be checked elsewhere.
    pub(super) fn user_name(
        &mut self,
        who: &str,
        key: &str,
        raw: Option<Spanned<String>>,
    ) -> Option<Option<String>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let span = raw.span();
        let user = raw.into_inner();
        if is_account_name(&user) {
            Some(Some(user))
        } else {
            self.problem(
                span,
                format!("{who}: {key} {user:?} is not a valid user name; valid: 1..=32 of [A-Za-z0-9_.-], or leave it out for root"),
            );
            None
        }
    }

    /// `control_group`: `Some(None)` when left out.
    fn control_group(
        &mut self,
        raw: Option<Spanned<String>>,
        sources: &mut Sources,
    ) -> Option<Option<String>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let span = raw.span();
        let group = raw.into_inner();
        if is_account_name(&group) {
            sources.control_group = Some(self.index.locate(span.start));
            Some(Some(group))
        } else {
            self.problem(
                span,
                format!("{WHO}: control_group {group:?} is not a valid group name; valid: 1..=32 of [A-Za-z0-9_.-], or leave it out for root only"),
            );
            None
        }
    }
}

/// Whether `name` can be a user or group name: 1..=32 of `[A-Za-z0-9_.$-]`,
/// not starting with `-` (what `useradd` and `groupadd` accept, and never an
/// option to a tool).
fn is_account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
}

/// What a node name may be. It travels in every advert, so the wire's limit
/// applies; it is not an identifier like an instance name, so any other printable
/// text (a hostname) will do.
fn node_name_rule() -> String {
    format!("1..={MAX_NAME_LEN} bytes, no whitespace or control characters")
}

/// Whether `name` follows [`node_name_rule`]; if not, why.
fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("is empty".into())
    } else if name.len() > MAX_NAME_LEN {
        Err(format!("is longer than {MAX_NAME_LEN} bytes"))
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("contains whitespace or control characters".into())
    } else {
        Ok(())
    }
}

/// The first 8 bytes (big-endian) of SHA-256 of the node name.
pub fn node_id(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_sha256_prefix() {
        // `printf db1 | sha256sum` starts 82e64648d9abefef.
        assert_eq!(node_id("db1"), 0x82e6_4648_d9ab_efef);
        assert_ne!(node_id("db1"), node_id("db2"));
    }
}
