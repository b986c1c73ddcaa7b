//! The image list (`initramfs/image.list`): parsed here, pure.

/// Placeholder in the list for the agent binary.
pub const AGENT: &str = "@agent";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Dir {
        path: String,
        mode: u32,
    },
    Nod {
        path: String,
        mode: u32,
        major: u32,
        minor: u32,
    },
    Slink {
        path: String,
        target: String,
    },
    /// `late`: in the late archive (a trailing `late` on the line), as for `Bin`.
    File {
        path: String,
        source: String,
        mode: u32,
        late: bool,
    },
    /// Like `File`, plus the shared-library closure of the ELF binary `source` (none if static).
    /// `late`: in the late archive the agent unpacks only when it needs the binary (a trailing
    /// `late` on the line).
    Bin {
        path: String,
        source: String,
        mode: u32,
        late: bool,
    },
}

impl Item {
    pub fn path(&self) -> &str {
        match self {
            Item::Dir { path, .. }
            | Item::Nod { path, .. }
            | Item::Slink { path, .. }
            | Item::File { path, .. }
            | Item::Bin { path, .. } => path,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("image list line {line}: {message}")]
pub struct ListError {
    pub line: usize,
    pub message: String,
}

fn mode(s: &str, line: usize) -> Result<u32, ListError> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| ListError {
            line,
            message: format!("{s:?} is not an octal mode"),
        })
}

fn path(s: &str, line: usize) -> Result<String, ListError> {
    if !s.starts_with('/') || s.split('/').any(|c| c == "..") {
        return Err(ListError {
            line,
            message: format!("{s:?} must be an absolute path without .."),
        });
    }
    Ok(s.to_owned())
}

pub fn parse(text: &str) -> Result<Vec<Item>, ListError> {
    let mut items = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let words: Vec<&str> = raw.split_whitespace().collect();
        let item = match words.as_slice() {
            [] => continue,
            [w, ..] if w.starts_with('#') => continue,
            ["dir", p, m] => Item::Dir {
                path: path(p, line)?,
                mode: mode(m, line)?,
            },
            ["nod", p, m, "c", maj, min] => Item::Nod {
                path: path(p, line)?,
                mode: mode(m, line)?,
                major: maj.parse().map_err(|_| ListError {
                    line,
                    message: format!("bad major {maj:?}"),
                })?,
                minor: min.parse().map_err(|_| ListError {
                    line,
                    message: format!("bad minor {min:?}"),
                })?,
            },
            ["slink", p, t] => Item::Slink {
                path: path(p, line)?,
                target: (*t).to_owned(),
            },
            ["file", p, s, m] | ["file", p, s, m, "late"] => Item::File {
                path: path(p, line)?,
                source: (*s).to_owned(),
                mode: mode(m, line)?,
                late: words.len() == 5,
            },
            ["bin", p, s, m] | ["bin", p, s, m, "late"] => Item::Bin {
                path: path(p, line)?,
                source: (*s).to_owned(),
                mode: mode(m, line)?,
                late: words.len() == 5,
            },
            _ => {
                return Err(ListError {
                    line,
                    message: format!("cannot read {raw:?}"),
                })
            }
        };
        items.push(item);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shipped_list() {
        let items = parse(include_str!("../../initramfs/image.list")).unwrap();
        assert!(items.contains(&Item::File {
            path: "/init".into(),
            source: AGENT.into(),
            mode: 0o755,
            late: false,
        }));
        assert!(items.contains(&Item::Nod {
            path: "/dev/console".into(),
            mode: 0o600,
            major: 5,
            minor: 1
        }));
        assert!(items
            .iter()
            .any(|i| matches!(i, Item::Dir { path, mode: 0o1777 } if path == "/tmp")));
        for checker in ["/sbin/xfs_repair", "/sbin/fsck.fat", "/sbin/btrfs"] {
            assert!(
                items
                    .iter()
                    .any(|i| matches!(i, Item::Bin { path, .. } if path == checker)),
                "{checker}"
            );
        }
    }

    #[test]
    fn parses_bin() {
        let items =
            parse("# dynamic\nbin /sbin/x /usr/sbin/x 0755\nbin /sbin/y /sbin/y 0755 late\n")
                .unwrap();
        assert_eq!(
            items,
            [
                Item::Bin {
                    path: "/sbin/x".into(),
                    source: "/usr/sbin/x".into(),
                    mode: 0o755,
                    late: false,
                },
                Item::Bin {
                    path: "/sbin/y".into(),
                    source: "/sbin/y".into(),
                    mode: 0o755,
                    late: true,
                }
            ]
        );
        assert!(parse("bin /sbin/x /usr/sbin/x 0755 soon").is_err());
        assert_eq!(items[0].path(), "/sbin/x");
        assert!(parse("bin /sbin/x /usr/sbin/x").is_err());
        assert!(parse("bin sbin/x /usr/sbin/x 0755").is_err());
        assert!(parse("bin /sbin/x /usr/sbin/x 0855").is_err());
    }

    #[test]
    fn rejects_bad_lines() {
        assert_eq!(parse("dir /x 999").unwrap_err().line, 1);
        assert!(parse("\n\nfile /x")
            .unwrap_err()
            .to_string()
            .starts_with("image list line 3"));
        assert!(parse("dir relative 0755").is_err());
        assert!(parse("dir /a/../b 0755").is_err());
        assert!(parse("nod /dev/x 0600 c five 1").is_err());
    }
}
