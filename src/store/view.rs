//! The keys a [`StoreSeat`](super::StoreSeat) decides from, as plain data,
//! and how they are read from etcd's key-value pairs: the holder key and the
//! member records under `PREFIX/INSTANCE/`, or Patroni's leader key.

use serde::{Deserialize, Serialize};

/// One key as etcd holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub value: String,
    /// The lease it lives under (0: none).
    pub lease: i64,
    /// Its last modification's revision (v2: its modified index).
    pub mod_revision: i64,
}

/// What a node publishes about itself under its lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub priority: u8,
    /// Healthy, not drained, not stopping.
    pub eligible: bool,
    pub preempt: bool,
    pub promoted: bool,
    /// Master with the VIPs claimed under this fencing token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<i64>,
    /// The node's MAC on the instance's interface (`aa:bb:cc:dd:ee:ff`), so
    /// the others' conflict watch takes its claims for a member's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl MemberInfo {
    /// [`Self::mac`] as bytes, when it is one.
    pub fn mac_bytes(&self) -> Option<[u8; 6]> {
        let text = self.mac.as_deref()?;
        let mut out = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut out {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(out)
    }

    /// The text form of a MAC for [`Self::mac`].
    pub fn mac_text(mac: [u8; 6]) -> String {
        mac.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The record's value as written to etcd.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A member record: `None` info when its value does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    pub node: String,
    pub lease: i64,
    pub mod_revision: i64,
    pub info: Option<MemberInfo>,
}

/// The keys as the watch last saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// `election = "etcd"`: the holder key.
    pub holder: Option<KeyRecord>,
    /// `election = "etcd"`: the member records, by node name.
    pub members: Vec<MemberRecord>,
    /// Keys under the members' prefix whose value does not parse.
    pub bad_members: Vec<String>,
    /// `election = "patroni"`: Patroni's leader key.
    pub leader: Option<KeyRecord>,
}

/// An instance's directory: `PREFIX/INSTANCE`, where its holder key and
/// member records live.
pub fn instance_dir(prefix: &str, instance: &str) -> String {
    format!("{prefix}/{instance}")
}

/// The holder key under an instance's directory `PREFIX/INSTANCE`.
pub fn holder_key(dir: &str) -> String {
    format!("{dir}/holder")
}

/// A node's member record under an instance's directory.
pub fn member_key(dir: &str, node: &str) -> String {
    format!("{dir}/members/{node}")
}

impl View {
    /// The view of an instance's directory `dir` from its keys: `(key,
    /// value, lease, mod_revision)`. Keys that are neither the holder key
    /// nor a member record are ignored; a holder value that is not UTF-8 is
    /// kept lossily (it names nobody).
    pub fn from_keys<'a>(
        dir: &str,
        keys: impl IntoIterator<Item = (&'a str, &'a [u8], i64, i64)>,
    ) -> Self {
        let holder = holder_key(dir);
        let members = format!("{dir}/members/");
        let mut view = Self::default();
        for (key, value, lease, mod_revision) in keys {
            if key == holder {
                view.holder = Some(KeyRecord {
                    value: String::from_utf8_lossy(value).into_owned(),
                    lease,
                    mod_revision,
                });
            } else if let Some(node) = key.strip_prefix(&members) {
                let info = serde_json::from_slice::<MemberInfo>(value).ok();
                if info.is_none() {
                    view.bad_members.push(key.to_owned());
                }
                view.members.push(MemberRecord {
                    node: node.to_owned(),
                    lease,
                    mod_revision,
                    info,
                });
            }
        }
        view.members.sort_by(|a, b| a.node.cmp(&b.node));
        view
    }

    /// The view of Patroni's leader key.
    pub fn leader(record: Option<KeyRecord>) -> Self {
        Self {
            leader: record,
            ..Self::default()
        }
    }
}
