//! What goes into the image and where: the image list's entries (a binary with its shared
//! libraries) and the kernel modules in load order with their aliases, each either in the
//! initramfs (`core`) or in the late archive (`late`: what only some rescues need).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::{closure, cpio, layout, modules, read, BuildError};
use crate::{MODULES_ALIAS_PATH, MODULES_LOAD_PATH};

/// The image's entries by path; a BTreeMap sorts them (parents before children) and dedups.
#[derive(Default, Clone)]
pub(crate) struct Tree {
    pub core: BTreeMap<String, cpio::Entry>,
    pub late: BTreeMap<String, cpio::Entry>,
}

impl Tree {
    pub fn add(&mut self, late: bool, path: &str, mode: u32, kind: cpio::Kind) {
        add_to(
            if late { &mut self.late } else { &mut self.core },
            path,
            mode,
            kind,
        );
    }
}

/// Adds `path` (and its parent directories, so the archive unpacks whatever the list forgot).
pub(crate) fn add_to(
    entries: &mut BTreeMap<String, cpio::Entry>,
    path: &str,
    mode: u32,
    kind: cpio::Kind,
) {
    let key = path.trim_start_matches('/').to_owned();
    for dir in Path::new(&key).ancestors().skip(1) {
        let dir = dir.to_string_lossy().into_owned();
        if !dir.is_empty() {
            let entry = cpio::Entry {
                path: dir.clone(),
                mode: 0o755,
                kind: cpio::Kind::Dir,
            };
            entries.entry(dir).or_insert(entry);
        }
    }
    entries.insert(
        key.clone(),
        cpio::Entry {
            path: key,
            mode,
            kind,
        },
    );
}

/// The image list's entries; a binary brings its shared libraries (each once, however many
/// binaries need it; those only late binaries need go late). `agent` is the bytes of
/// [`layout::AGENT`].
pub(crate) fn add_list(tree: &mut Tree, list: &str, agent: &[u8]) -> Result<(), BuildError> {
    let mut libs: BTreeMap<String, closure::Lib> = BTreeMap::new();
    let mut core_libs: BTreeSet<String> = BTreeSet::new();
    let mut late_bins: Vec<(String, u32, Vec<u8>)> = Vec::new();
    let resolver = closure::Resolver::host();
    let items = layout::parse(list)?;
    let listed: BTreeSet<String> = items.iter().map(|i| i.path().to_owned()).collect();
    for item in items {
        let is_bin = matches!(item, layout::Item::Bin { .. });
        match item {
            layout::Item::Dir { path, mode } => tree.add(false, &path, mode, cpio::Kind::Dir),
            layout::Item::Nod {
                path,
                mode,
                major,
                minor,
            } => tree.add(false, &path, mode, cpio::Kind::CharDev { major, minor }),
            layout::Item::Slink { path, target } => {
                tree.add(false, &path, 0o777, cpio::Kind::Symlink(target))
            }
            // A file is taken as it is; a binary also brings its shared libraries.
            layout::Item::File {
                path,
                source,
                mode,
                late,
            }
            | layout::Item::Bin {
                path,
                source,
                mode,
                late,
            } => {
                let data = if source == layout::AGENT {
                    agent.to_vec()
                } else {
                    read(Path::new(&source))?
                };
                if is_bin {
                    for lib in resolver.closure(&path, Path::new(&source), &data)? {
                        if !late {
                            core_libs.insert(lib.image_path.clone());
                        }
                        libs.entry(lib.image_path.clone()).or_insert(lib);
                    }
                }
                if late {
                    late_bins.push((path, mode, data));
                } else {
                    tree.add(false, &path, mode, cpio::Kind::File(data));
                }
            }
        }
    }
    for (path, mode, data) in late_bins {
        tree.add(true, &path, mode, cpio::Kind::File(data));
    }
    // What the list names itself wins over a library found for a binary.
    for (path, lib) in libs {
        if !listed.contains(&path) {
            let late = !core_libs.contains(&path);
            tree.add(late, &path, lib.mode, cpio::Kind::File(lib.data));
        }
    }
    Ok(())
}

/// The module list's lines (`NAME`, `NAME optional`, `NAME late`): (name, optional, late).
pub(crate) fn module_list(text: &str) -> Vec<(&str, bool, bool)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap_or(l);
            let flags: Vec<&str> = words.collect();
            (name, flags.contains(&"optional"), flags.contains(&"late"))
        })
        .collect()
}

/// The modules to carry, in load order, and which of them go in the initramfs (a module is late
/// when only late ones need it).
pub(crate) fn resolve(
    index: &modules::Index,
    listed: &[(&str, bool, bool)],
    version: &str,
) -> Result<(Vec<modules::Load>, BTreeSet<String>), BuildError> {
    let resolve = |wanted: Vec<(&str, bool)>| {
        index
            .resolve_with(&wanted)
            .map_err(|source| BuildError::Module {
                version: version.to_owned(),
                source,
            })
    };
    let loads = resolve(listed.iter().map(|(n, o, _)| (*n, *o)).collect())?;
    let core = resolve(
        listed
            .iter()
            .filter(|(_, _, late)| !late)
            .map(|(n, o, _)| (*n, *o))
            .collect(),
    )?
    .into_iter()
    .map(|l| l.path)
    .collect();
    Ok((loads, core))
}

/// The modules themselves, the load list (`PATH [optional] name=NAME needs=A,B`: in load
/// order, each with what it needs first) and the aliases of those carried.
pub(crate) fn add_modules(
    tree: &mut Tree,
    index: &modules::Index,
    (loads, core): &(Vec<modules::Load>, BTreeSet<String>),
    version: &str,
    moddir: &Path,
) -> Result<(), BuildError> {
    let carried: BTreeSet<String> = loads.iter().map(|l| modules::name_of(&l.path)).collect();
    let mut load_list = String::from("# Written by vmrescue image build: modules in load order.\n");
    let mut late_modules = Vec::new();
    for l in loads {
        let image_path = format!("/lib/modules/{version}/{}", l.path);
        let data = cpio::Kind::File(read(&moddir.join(&l.path))?);
        if core.contains(&l.path) {
            tree.add(false, &image_path, 0o644, data);
        } else {
            late_modules.push((image_path.clone(), data));
        }
        let name = modules::name_of(&l.path);
        let needs = index.needs(&name, &carried).join(",");
        load_list.push_str(&format!(
            "{image_path}{} name={name} needs={needs}\n",
            if l.optional { " optional" } else { "" }
        ));
    }
    let text = |s: String| cpio::Kind::File(s.into_bytes());
    tree.add(false, MODULES_LOAD_PATH, 0o644, text(load_list));
    let alias_list: String = index
        .aliases_of(&carried)
        .into_iter()
        .map(|(pattern, module)| format!("alias {pattern} {module}\n"))
        .collect();
    tree.add(false, MODULES_ALIAS_PATH, 0o644, text(alias_list));
    for (path, data) in late_modules {
        tree.add(true, &path, 0o644, data);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_list_lines_and_their_flags() {
        let list =
            "# comment\n\nvirtio_blk\n  dm_mod late\nvirtio_scsi optional\nraid1 late optional\n";
        assert_eq!(
            module_list(list),
            [
                ("virtio_blk", false, false),
                ("dm_mod", false, true),
                ("virtio_scsi", true, false),
                ("raid1", true, true),
            ]
        );
    }

    #[test]
    fn an_entry_brings_its_parents_and_a_later_one_wins() {
        let mut tree = Tree::default();
        tree.add(
            false,
            "/usr/sbin/tool",
            0o755,
            cpio::Kind::File(b"a".to_vec()),
        );
        tree.add(
            false,
            "/usr/sbin/tool",
            0o700,
            cpio::Kind::File(b"b".to_vec()),
        );
        tree.add(true, "/lib/late.so", 0o644, cpio::Kind::File(b"c".to_vec()));
        let core: Vec<&str> = tree.core.keys().map(String::as_str).collect();
        assert_eq!(core, ["usr", "usr/sbin", "usr/sbin/tool"]);
        assert_eq!(tree.core["usr/sbin/tool"].mode, 0o700);
        assert!(matches!(tree.core["usr"].kind, cpio::Kind::Dir));
        let late: Vec<&str> = tree.late.keys().map(String::as_str).collect();
        assert_eq!(late, ["lib", "lib/late.so"]);
    }
}
