//! Kernel module closure: which `.ko` files the rescue needs and the order to load them in,
//! from the kernel's own `modules.dep`, `modules.softdep`, `modules.alias` and `modules.builtin`.
//! Pure: the caller reads the files.

use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModuleError {
    #[error(
        "module {0:?} is neither in modules.dep, modules.alias nor modules.builtin of this kernel"
    )]
    Unknown(String),
}

/// A module to load, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    /// Path relative to `/lib/modules/<version>/`.
    pub path: String,
    /// Pulled in as a soft dependency: a failure to load it is not an error.
    pub optional: bool,
}

/// The kernel's module index.
#[derive(Debug, Default)]
pub struct Index {
    /// name -> (path, direct dependencies by name)
    deps: HashMap<String, (String, Vec<String>)>,
    /// name -> (pre, post) soft dependencies (names or aliases)
    softdeps: HashMap<String, (Vec<String>, Vec<String>)>,
    /// exact alias -> providing module names
    aliases: HashMap<String, BTreeSet<String>>,
    /// every alias (device patterns included) as (pattern, module), in the file's order
    all_aliases: Vec<(String, String)>,
    builtin: BTreeSet<String>,
}

/// `kernel/fs/ext4/ext4.ko` -> `ext4`; `crc32c-intel.ko.xz` -> `crc32c_intel`.
pub fn name_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    normalise(stem)
}

fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

impl Index {
    /// Builds the index from the texts of the kernel's files (`softdep`, `alias`, `builtin` may
    /// be empty).
    pub fn parse(dep: &str, softdep: &str, alias: &str, builtin: &str) -> Index {
        let mut idx = Index::default();
        for line in dep.lines() {
            let Some((path, rest)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let deps = rest.split_whitespace().map(name_of).collect();
            idx.deps.insert(name_of(path), (path.to_owned(), deps));
        }
        for line in softdep.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next() else { continue };
            let entry = idx.softdeps.entry(normalise(module)).or_default();
            let mut post = false;
            for w in words {
                match w {
                    "pre:" => post = false,
                    "post:" => post = true,
                    name if post => entry.1.push(name.to_owned()),
                    name => entry.0.push(name.to_owned()),
                }
            }
        }
        for line in alias.lines() {
            let mut words = line.split_whitespace();
            if let (Some("alias"), Some(a), Some(m)) = (words.next(), words.next(), words.next()) {
                idx.all_aliases.push((a.to_owned(), normalise(m)));
                // Wildcard aliases (device IDs) are not needed to resolve names.
                if !a.contains(['*', '?', '[']) {
                    idx.aliases
                        .entry(a.to_owned())
                        .or_default()
                        .insert(normalise(m));
                }
            }
        }
        idx.builtin = builtin
            .lines()
            .map(name_of)
            .filter(|n| !n.is_empty())
            .collect();
        idx
    }

    /// Module names that provide `name` (itself, or an alias's providers); empty if builtin.
    fn providers(&self, name: &str) -> Result<Vec<String>, ModuleError> {
        let n = normalise(name);
        if self.deps.contains_key(&n) {
            return Ok(vec![n]);
        }
        if self.builtin.contains(&n) {
            return Ok(vec![]);
        }
        match self.aliases.get(name) {
            Some(mods) => Ok(mods
                .iter()
                .filter(|m| !self.builtin.contains(*m))
                .cloned()
                .collect()),
            None => Err(ModuleError::Unknown(name.to_owned())),
        }
    }

    /// What `name` needs loaded first: its hard dependencies and the providers of its `pre:`
    /// soft dependencies that `carried` holds.
    pub fn needs(&self, name: &str, carried: &BTreeSet<String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let (pre, _) = self.softdeps.get(name).cloned().unwrap_or_default();
        for soft in &pre {
            out.extend(self.providers(soft).unwrap_or_default());
        }
        if let Some((_, deps)) = self.deps.get(name) {
            out.extend(deps.iter().cloned());
        }
        let mut seen = BTreeSet::new();
        out.retain(|m| carried.contains(m) && seen.insert(m.clone()));
        out
    }

    /// Every alias of the `carried` modules, device patterns included: (pattern, module).
    pub fn aliases_of(&self, carried: &BTreeSet<String>) -> Vec<(String, String)> {
        self.all_aliases
            .iter()
            .filter(|(_, m)| carried.contains(m))
            .cloned()
            .collect()
    }

    /// The load order for `wanted` (names or aliases) with every hard and soft dependency, each
    /// module after what it depends on.
    pub fn resolve(&self, wanted: &[&str]) -> Result<Vec<Load>, ModuleError> {
        let wanted: Vec<(&str, bool)> = wanted.iter().map(|w| (*w, false)).collect();
        self.resolve_with(&wanted)
    }

    /// [`Index::resolve`] where each wanted module may be optional (the agent loads it when it
    /// can, and a failure is no warning: e.g. `efivarfs` on a BIOS machine).
    pub fn resolve_with(&self, wanted: &[(&str, bool)]) -> Result<Vec<Load>, ModuleError> {
        let mut order = Vec::new();
        let mut state: BTreeMap<String, bool> = BTreeMap::new(); // name -> optional
        for (w, optional) in wanted {
            for m in self.providers(w)? {
                self.visit(&m, *optional, &mut state, &mut order);
            }
        }
        Ok(order
            .into_iter()
            .map(|name| Load {
                path: self.deps[&name].0.clone(),
                optional: state[&name],
            })
            .collect())
    }

    fn visit(
        &self,
        name: &str,
        optional: bool,
        state: &mut BTreeMap<String, bool>,
        order: &mut Vec<String>,
    ) {
        if let Some(opt) = state.get_mut(name) {
            // Required anywhere wins over optional.
            *opt &= optional;
            return;
        }
        let Some((_, deps)) = self.deps.get(name) else {
            return;
        };
        state.insert(name.to_owned(), optional);
        let (pre, post) = self.softdeps.get(name).cloned().unwrap_or_default();
        for soft in &pre {
            for m in self.providers(soft).unwrap_or_default() {
                self.visit(&m, true, state, order);
            }
        }
        for d in deps {
            self.visit(d, optional, state, order);
        }
        order.push(name.to_owned());
        for soft in &post {
            for m in self.providers(soft).unwrap_or_default() {
                self.visit(&m, true, state, order);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
";
    const SOFTDEP: &str = "# comment\nsoftdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\nsoftdep libcrc32c pre: crc32c\n";
    const ALIAS: &str = "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\nalias crc32c crc32c_intel\nalias pci:v00001AF4d00001001sv*sd*bc*sc*i* virtio_pci\nalias fs-ext3 ext4\n";
    const BUILTIN: &str = "kernel/fs/configfs/configfs.ko\n";

    fn idx() -> Index {
        Index::parse(DEP, SOFTDEP, ALIAS, BUILTIN)
    }

    fn pos(order: &[Load], name: &str) -> usize {
        order
            .iter()
            .position(|l| name_of(&l.path) == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn needs_and_aliases_of_what_is_carried() {
        let i = idx();
        let loads = i.resolve(&["ext4", "virtio_blk"]).unwrap();
        let carried: BTreeSet<String> = loads.iter().map(|l| name_of(&l.path)).collect();
        assert_eq!(
            i.needs("ext4", &carried),
            ["crc32c_generic", "crc32c_intel", "crc16", "mbcache", "jbd2"]
        );
        assert_eq!(i.needs("virtio_blk", &carried), ["virtio", "virtio_ring"]);
        let aliases = i.aliases_of(&carried);
        assert!(aliases.contains(&("fs-ext3".into(), "ext4".into())));
        assert!(
            !aliases.iter().any(|(_, m)| m == "virtio_pci"),
            "only carried modules' aliases: {aliases:?}"
        );
    }

    #[test]
    fn ext4_pulls_hard_and_soft_dependencies_in_order() {
        let order = idx().resolve(&["ext4"]).unwrap();
        let names: BTreeSet<_> = order.iter().map(|l| name_of(&l.path)).collect();
        let want: BTreeSet<String> = [
            "ext4",
            "jbd2",
            "mbcache",
            "crc16",
            "crc32c_generic",
            "crc32c_intel",
        ]
        .map(String::from)
        .into();
        assert_eq!(names, want);
        for dep in ["jbd2", "mbcache", "crc16", "crc32c_generic", "crc32c_intel"] {
            assert!(pos(&order, dep) < pos(&order, "ext4"), "{dep} after ext4");
        }
        assert!(order
            .iter()
            .find(|l| l.path.ends_with("ext4.ko"))
            .is_some_and(|l| !l.optional));
        assert!(order
            .iter()
            .find(|l| l.path.contains("crc32c-intel"))
            .is_some_and(|l| l.optional));
    }

    #[test]
    fn xfs_gets_libcrc32c_and_its_softdep() {
        let order = idx().resolve(&["xfs"]).unwrap();
        assert!(pos(&order, "libcrc32c") < pos(&order, "xfs"));
        assert!(pos(&order, "crc32c_generic") < pos(&order, "libcrc32c"));
    }

    #[test]
    fn transitive_order_and_no_duplicates() {
        let order = idx().resolve(&["virtio_blk", "virtio", "fs-ext3"]).unwrap();
        assert!(pos(&order, "virtio_ring") < pos(&order, "virtio"));
        assert!(pos(&order, "virtio") < pos(&order, "virtio_blk"));
        let mut paths: Vec<_> = order.iter().map(|l| &l.path).collect();
        let n = paths.len();
        paths.dedup();
        assert_eq!(paths.len(), n);
        assert!(order.iter().any(|l| l.path.ends_with("ext4.ko")));
    }

    #[test]
    fn builtin_is_skipped_unknown_is_an_error() {
        assert_eq!(idx().resolve(&["configfs"]).unwrap(), vec![]);
        assert_eq!(
            idx().resolve(&["nosuchfs"]),
            Err(ModuleError::Unknown("nosuchfs".into()))
        );
    }

    #[test]
    fn required_beats_optional() {
        let order = idx().resolve(&["ext4", "crc32c_generic"]).unwrap();
        assert!(order
            .iter()
            .find(|l| l.path.contains("crc32c_generic"))
            .is_some_and(|l| !l.optional));
    }

    #[test]
    fn names() {
        assert_eq!(
            name_of("kernel/arch/x86/crypto/crc32c-intel.ko.zst"),
            "crc32c_intel"
        );
        assert_eq!(name_of("ext4.ko"), "ext4");
    }
}
