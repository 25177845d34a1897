//! The manual pages: `vipd(8)` (and `vipd-COMMAND(8)`) from the clap definitions,
//! and `vipd.toml(5)` from the documented example `config/vipd.toml`.
//!
//! Owns: turning those two sources into roff. `vipd.toml(5)` has no text of its
//! own: every key, default and range in it is read from the example's comments
//! ([`config_reference`]), so the page and the example cannot drift apart; a
//! test (`tests/manual.rs`) checks the example against the schema (`config::raw`)
//! and the defaults (`config::defaults`).
//! May not touch: anything but the text it is given; the binary writes the files
//! (`vipd generate-assets DIR`, run by the package build).

use std::io;

/// The documented example configuration, the one source of `vipd.toml(5)`.
pub const EXAMPLE_CONFIG: &str = include_str!("../config/vipd.toml");

const VERSION: &str = env!("CARGO_PKG_VERSION");

const DESCRIPTION: &str = "\
vipd moves virtual IP addresses (VIPs) between the nodes of a group. Each node runs
vipd with its own priority; the healthy node with the highest priority holds the
VIPs and sends authenticated adverts, the others stand by and take over within
about three advert intervals when the adverts stop. Becoming master sends
gratuitous ARPs and unsolicited neighbour advertisements so clients follow.
.PP
The configuration is /etc/vipd/vipd.toml, described in vipd.toml(5); check it with
vipd check. The daemon runs under systemd as vipd.service (Type=notify): reload
with systemctl reload vipd (SIGHUP) or vipd reload, which leave unchanged instances
untouched. The other commands talk to the running daemon over its control socket.";

const EXAMPLES: &str = "\
Check the configuration, start the daemon and look at it:
.PP
.nf
.RS
vipd check --config /etc/vipd/vipd.toml
systemctl enable --now vipd
vipd status
.RE
.fi
.PP
Make a key on one node and copy it to the other:
.PP
.nf
.RS
vipd keygen /etc/vipd/db.key
scp -p /etc/vipd/db.key db2:/etc/vipd/db.key
.RE
.fi
.PP
Hand the VIPs over before maintenance and wait until the other node holds them;
take them back afterwards:
.PP
.nf
.RS
vipd drain --wait
vipd undrain
vipd promote --wait db
.RE
.fi
.PP
Convert a keepalived configuration and read what was left out:
.PP
.nf
.RS
vipd import-keepalived /etc/keepalived/keepalived.conf > /etc/vipd/vipd.toml
.RE
.fi";

const FILES: &str = "\
.TP
/etc/vipd/vipd.toml
The configuration (vipd.toml(5)); the package installs none.
.TP
/usr/share/doc/vipd/examples/vipd.toml
The documented example configuration.
.TP
/run/vipd/vipd.sock
The control socket (node.control_socket).
.TP
/var/lib/vipd
State kept across restarts (node.state_dir).";

/// `vipd.8` and one `vipd-COMMAND.8` per visible subcommand, as (file name, roff).
pub fn command_man_pages(command: &clap::Command) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut pages = Vec::new();
    let man = clap_mangen::Man::new(command.clone())
        .section("8")
        .manual("System Administration")
        .source(format!("vipd {VERSION}"));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    page.extend_from_slice(format!(".SH DESCRIPTION\n{DESCRIPTION}\n").as_bytes());
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    let mut see_also = vec!["vipd.toml(5)".to_owned()];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        see_also.push(format!("vipd-{}(8)", sub.get_name()));
    }
    page.extend_from_slice(
        format!(
            ".SH EXAMPLES\n{EXAMPLES}\n.SH FILES\n{FILES}\n.SH SEE ALSO\n{}\n",
            see_also.join(", ")
        )
        .as_bytes(),
    );
    man.render_version_section(&mut page)?;
    pages.push(("vipd.8".to_owned(), page));

    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("vipd-{}", sub.get_name());
        let sub = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("vipd {}", sub.get_name()));
        let man = clap_mangen::Man::new(sub)
            .section("8")
            .manual("System Administration")
            .source(format!("vipd {VERSION}"));
        let mut page = Vec::new();
        man.render(&mut page)?;
        page.extend_from_slice(b".SH SEE ALSO\nvipd(8), vipd.toml(5)\n");
        pages.push((format!("{name}.8"), page));
    }
    Ok(pages)
}

/// One table of the configuration as the example documents it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The table's path: `node`, `instance`, `instance.track_script`, `sync_group`.
    pub table: String,
    /// Whether it is an array of tables (`[[...]]`).
    pub array: bool,
    /// Paragraphs and keys, in the example's order.
    pub items: Vec<Item>,
}

/// A paragraph or a key of a [`Section`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// Comment lines not attached to a key.
    Prose(Vec<String>),
    /// A key (written live or commented out in the example).
    Key {
        /// The key's name.
        name: String,
        /// The example's value.
        value: String,
        /// Its comment lines (those above it and after it on its line).
        description: Vec<String>,
    },
}

impl Section {
    /// The keys documented in this table.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.items.iter().filter_map(|item| match item {
            Item::Key {
                name, description, ..
            } => Some((name.as_str(), description.as_slice())),
            Item::Prose(_) => None,
        })
    }
}

/// The example's documentation: its opening comment and each table's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigReference {
    /// The comment before the first table.
    pub preamble: Vec<String>,
    /// The tables, each once, in the order they first appear.
    pub sections: Vec<Section>,
}

/// Reads the example's comments into a [`ConfigReference`].
pub fn config_reference(example: &str) -> ConfigReference {
    let mut preamble = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut current: Option<usize> = None;
    let mut pending: Vec<String> = Vec::new();
    // The key whose trailing `#      # more` lines are still coming.
    let mut open_key: Option<(usize, usize)> = None;

    fn flush(sections: &mut [Section], current: Option<usize>, pending: &mut Vec<String>) {
        while pending.last().is_some_and(|l| l.is_empty()) {
            pending.pop();
        }
        while pending.first().is_some_and(|l| l.is_empty()) {
            pending.remove(0);
        }
        if pending.is_empty() {
            return;
        }
        if let Some(i) = current {
            sections[i].items.push(Item::Prose(std::mem::take(pending)));
        }
        pending.clear();
    }

    for raw_line in example.lines() {
        let line = raw_line.trim_end();
        let (commented, content) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.strip_prefix(' ').unwrap_or(rest)),
            None => (false, line),
        };
        if commented && content.starts_with("---") {
            flush(&mut sections, current, &mut pending);
            open_key = None;
            continue;
        }
        if let Some((table, array)) = table_header(content) {
            if current.is_none() {
                preamble = std::mem::take(&mut pending);
                while preamble.last().is_some_and(|l| l.is_empty()) {
                    preamble.pop();
                }
            }
            flush(&mut sections, current, &mut pending);
            open_key = None;
            current = Some(match sections.iter().position(|s| s.table == table) {
                Some(i) => i,
                None => {
                    sections.push(Section {
                        table,
                        array,
                        items: Vec::new(),
                    });
                    sections.len() - 1
                }
            });
            continue;
        }
        let Some(section) = current else {
            if commented {
                pending.push(content.to_owned());
            }
            continue;
        };
        if line.is_empty() {
            open_key = None;
            if !pending.is_empty() {
                pending.push(String::new());
            }
            continue;
        }
        if let Some((name, value, trailing)) = key_line(content) {
            let mut description = std::mem::take(&mut pending);
            while description.last().is_some_and(|l| l.is_empty()) {
                description.pop();
            }
            while description.first().is_some_and(|l| l.is_empty()) {
                description.remove(0);
            }
            description.extend(trailing);
            // The inline form of a sub-table (`track_file = [{ path = ... }]`),
            // written inside the sub-table before it, is a key of the parent.
            let section = match sections[section].table.rsplit_once('.') {
                Some((parent, _)) if value.starts_with('{') || value.starts_with("[{") => sections
                    .iter()
                    .position(|s| s.table == parent)
                    .unwrap_or(section),
                _ => section,
            };
            let items = &mut sections[section].items;
            let known = items
                .iter()
                .position(|item| matches!(item, Item::Key { name: n, .. } if *n == name));
            open_key = match known {
                Some(i) => {
                    // A second example of a key (the second [[instance]]): its
                    // comment adds to the first one's.
                    if let Item::Key { description: d, .. } = &mut items[i] {
                        if !description.is_empty() {
                            d.push(String::new());
                            d.extend(description);
                        }
                    }
                    Some((section, i))
                }
                None => {
                    items.push(Item::Key {
                        name,
                        value,
                        description,
                    });
                    Some((section, items.len() - 1))
                }
            };
            continue;
        }
        // `#        # more about the key above`
        let continuation = content.trim_start();
        if commented && content.starts_with(' ') && continuation.starts_with('#') {
            if let Some((s, i)) = open_key {
                if let Item::Key { description, .. } = &mut sections[s].items[i] {
                    let text = continuation.trim_start_matches('#').trim_start();
                    description.push(text.to_owned());
                    continue;
                }
            }
        }
        open_key = None;
        if commented {
            pending.push(content.to_owned());
        }
    }
    flush(&mut sections, current, &mut pending);
    ConfigReference { preamble, sections }
}

/// `[node]`, `[[instance]]`, `[instance.notify]` → (table, is array).
fn table_header(content: &str) -> Option<(String, bool)> {
    let content = content.trim();
    let (inner, array) = match content.strip_prefix("[[") {
        Some(rest) => (rest.strip_suffix("]]")?, true),
        None => (content.strip_prefix('[')?.strip_suffix(']')?, false),
    };
    let valid = !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.');
    valid.then(|| (inner.to_owned(), array))
}

/// `key = value   # comment` → (key, value, the comment if any).
fn key_line(content: &str) -> Option<(String, String, Option<String>)> {
    let (name, rest) = content.split_once(" = ")?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return None;
    }
    // A trailing comment starts at `  #` outside a string (values here hold no `#`
    // of their own except inside strings, which the two spaces rule out).
    let (value, comment) = match rest.find("  #") {
        Some(i) => (
            rest[..i].trim_end(),
            Some(
                rest[i..]
                    .trim_start()
                    .trim_start_matches('#')
                    .trim()
                    .to_owned(),
            ),
        ),
        None => (rest.trim_end(), None),
    };
    // Prose that happens to start like a key (`auth = "none" (no default)...`)
    // is not a TOML value.
    format!("{name} = {value}").parse::<toml::Table>().ok()?;
    Some((name.to_owned(), value.to_owned(), comment))
}

/// `vipd.toml(5)`, from [`EXAMPLE_CONFIG`].
pub fn config_man_page() -> String {
    let reference = config_reference(EXAMPLE_CONFIG);
    let mut page = String::new();
    page.push_str(&format!(
        ".TH VIPD.TOML 5 \"\" \"vipd {VERSION}\" \"File Formats\"\n"
    ));
    page.push_str(
        ".SH NAME\nvipd.toml \\- configuration file of vipd, the virtual\\-IP failover daemon\n",
    );
    page.push_str(".SH SYNOPSIS\n/etc/vipd/vipd.toml\n");
    page.push_str(".SH DESCRIPTION\n");
    push_lines(&mut page, &reference.preamble);
    page.push_str(".PP\nEach key below shows the value of the documented example, installed as\n/usr/share/doc/vipd/examples/vipd.toml, which this page is generated from.\n");
    for section in &reference.sections {
        let header = if section.array {
            format!("[[{}]]", section.table)
        } else {
            format!("[{}]", section.table)
        };
        page.push_str(&format!(".SH \"{}\"\n", roff_escape(&header)));
        for item in &section.items {
            match item {
                Item::Prose(lines) => {
                    page.push_str(".PP\n");
                    push_lines(&mut page, lines);
                }
                Item::Key {
                    name,
                    value,
                    description,
                } => {
                    page.push_str(&format!(
                        ".TP\n\\fB{}\\fR = {}\n",
                        roff_escape(name),
                        roff_escape(value)
                    ));
                    push_lines(&mut page, description);
                }
            }
        }
    }
    page.push_str(".SH SEE ALSO\nvipd(8)\n");
    page
}

/// Comment lines as roff: plain lines fill, indented ones (commands, lists) keep
/// their layout, blank ones start a paragraph.
fn push_lines(page: &mut String, lines: &[String]) {
    let mut literal = false;
    for line in lines {
        let indented = line.starts_with("  ");
        if indented != literal {
            page.push_str(if indented { ".nf\n" } else { ".fi\n" });
            literal = indented;
        }
        if line.is_empty() {
            page.push_str(if literal { "\n" } else { ".sp\n" });
        } else {
            page.push_str(&roff_escape(line));
            page.push('\n');
        }
    }
    if literal {
        page.push_str(".fi\n");
    }
}

fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_prose_and_commented_tables_are_read() {
        let reference = config_reference(
            "# Intro.\n\n[node]\n# The name.\nname = \"db1\"\n\n[[instance]]\nname = \"db\"\n\
             # ---\n# [instance.notify]\n# master = [\"/x\"]  # default: none\n#   # more\n",
        );
        assert_eq!(reference.preamble, ["Intro."]);
        let node = &reference.sections[0];
        assert_eq!(node.table, "node");
        assert_eq!(
            node.keys().collect::<Vec<_>>(),
            [("name", &["The name.".to_owned()][..])]
        );
        let notify = &reference.sections[2];
        assert_eq!(notify.table, "instance.notify");
        assert!(!notify.array);
        let (name, description) = notify.keys().next().unwrap();
        assert_eq!(name, "master");
        assert_eq!(description, ["default: none", "more"]);
    }

    #[test]
    fn the_page_has_every_table_of_the_example() {
        let page = config_man_page();
        for table in [
            "[node]",
            "[[instance]]",
            "[[instance.track_script]]",
            "[instance.notify]",
            "[[sync_group]]",
        ] {
            assert!(page.contains(&format!(".SH \"{table}\"")), "{table}");
        }
    }
}
