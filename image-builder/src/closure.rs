//! The shared-library closure of a dynamically linked binary, so it runs inside the initramfs:
//! its program interpreter (PT_INTERP) and the transitive DT_NEEDED libraries, found the way the
//! dynamic loader looks for them without an `ld.so.cache` (the object's DT_RUNPATH, or DT_RPATH
//! along the chain of loaders, then the standard directories).
//!
//! Each library goes into the image under the directory it was found in, with its DT_NEEDED name
//! (so a `libuuid.so.1` symlink on the host becomes a regular file of the real library's bytes);
//! the interpreter goes to its PT_INTERP path. A static binary has an empty closure.

use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use crate::elf::{self, ElfError};

/// Where the x86_64 Debian dynamic loader and its packages keep libraries, in search order.
pub const DEFAULT_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

#[derive(Debug, thiserror::Error)]
pub enum ClosureError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Elf { path: PathBuf, source: ElfError },
    #[error("{binary}: its program interpreter {interp} is not on this host")]
    NoInterpreter { binary: PathBuf, interp: String },
    #[error("{binary}: needs shared libraries but names no program interpreter (PT_INTERP)")]
    NeedsInterpreter { binary: PathBuf },
    #[error("{binary}: {object} asks for {name:?}, which is not a plain file name")]
    BadName {
        binary: PathBuf,
        object: String,
        name: String,
    },
    #[error("{binary}: shared library {library} (needed by {needed_by}) is in none of {searched}")]
    Missing {
        binary: PathBuf,
        library: String,
        needed_by: String,
        searched: String,
    },
}

/// One file of a closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lib {
    /// Absolute path inside the image.
    pub image_path: String,
    /// The host file it was read from (as found, possibly a symlink).
    pub host_path: PathBuf,
    /// The bytes of the file behind any symlinks.
    pub data: Vec<u8>,
    /// 0755 for the interpreter (it can be run directly), 0644 for libraries.
    pub mode: u32,
}

/// A directory to search, as seen inside the image and on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dir {
    image: String,
    host: PathBuf,
}

/// An object whose DT_NEEDED entries are still to be resolved.
struct Object {
    image_path: String,
    needed: Vec<String>,
    /// Its own search directories (DT_RUNPATH, or DT_RPATH plus its loaders' DT_RPATH).
    search: Vec<Dir>,
    /// DT_RPATH directories its dependencies inherit.
    rpath_chain: Vec<Dir>,
}

/// Finds libraries under a root directory (`/` for the host).
#[derive(Debug, Clone)]
pub struct Resolver {
    root: PathBuf,
    dirs: Vec<String>,
}

/// `/a/./b//../c` -> `/a/c`; `None` for a relative path.
fn normalise(path: &str) -> Option<String> {
    path.starts_with('/')
        .then(|| vmrescue_discovery::path::clamp_at_root(path))
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

fn parent(image_path: &str) -> &str {
    match image_path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}

impl Resolver {
    /// The host's libraries in the standard directories.
    pub fn host() -> Resolver {
        Resolver::new("/", DEFAULT_DIRS)
    }

    /// Libraries under `root`, searched in `dirs` (absolute paths as seen from `root`).
    pub fn new(root: impl Into<PathBuf>, dirs: &[&str]) -> Resolver {
        Resolver {
            root: root.into(),
            dirs: dirs.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    fn on_host(&self, image_path: &str) -> PathBuf {
        self.root.join(image_path.trim_start_matches('/'))
    }

    /// A DT_RUNPATH/DT_RPATH entry of an object found at `image_origin` (its directory in the
    /// image) and `host_origin` (the same directory on the host). `None` for what the image's
    /// loader could not follow either: relative entries and `$LIB`/`$PLATFORM`.
    fn search_dir(&self, entry: &str, image_origin: &str, host_origin: &Path) -> Option<Dir> {
        let rest = ["$ORIGIN", "${ORIGIN}"]
            .iter()
            .find_map(|o| entry.strip_prefix(o));
        if let Some(rest) = rest {
            if rest.contains('$') || !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            let image = normalise(&format!("{image_origin}{rest}"))?;
            let host = PathBuf::from(format!("{}{rest}", host_origin.to_str()?));
            return Some(Dir { image, host });
        }
        if entry.contains('$') {
            return None;
        }
        let image = normalise(entry)?;
        Some(Dir {
            host: self.on_host(&image),
            image,
        })
    }

    fn search_dirs(&self, entries: &[String], image_origin: &str, host_origin: &Path) -> Vec<Dir> {
        entries
            .iter()
            .filter_map(|e| self.search_dir(e, image_origin, host_origin))
            .collect()
    }

    /// The first `name` in `dirs` that is an ELF object for `machine`, as the loader skips
    /// files it cannot use.
    fn find(&self, name: &str, dirs: &[Dir], machine: u16) -> Option<(Dir, Vec<u8>, elf::Dynamic)> {
        dirs.iter().find_map(|dir| {
            let data = fs::read(dir.host.join(name)).ok()?;
            let info = elf::dynamic(&data).ok()?;
            (info.machine == machine).then(|| (dir.clone(), data, info))
        })
    }

    /// The closure of `bin` (read from `source`), a binary that goes to `image_path`. Libraries
    /// are listed in the order the loader would load them, the interpreter first.
    pub fn closure(
        &self,
        image_path: &str,
        source: &Path,
        bin: &[u8],
    ) -> Result<Vec<Lib>, ClosureError> {
        let info = elf::dynamic(bin).map_err(|e| ClosureError::Elf {
            path: source.to_owned(),
            source: e,
        })?;
        let machine = info.machine;
        let Some(interp) = info.interp.clone() else {
            if info.needed.is_empty() {
                return Ok(Vec::new());
            }
            return Err(ClosureError::NeedsInterpreter {
                binary: source.to_owned(),
            });
        };
        let mut libs = Vec::new();
        // Names the loader already has: it does not look for them again.
        let mut loaded = BTreeSet::new();
        libs.push(self.interpreter(source, &interp, &mut loaded)?);

        let defaults: Vec<Dir> = self
            .dirs
            .iter()
            .map(|d| Dir {
                image: d.clone(),
                host: self.on_host(d),
            })
            .collect();
        let image_origin = parent(image_path);
        let host_origin = source.parent().unwrap_or(Path::new("/"));
        let mut queue = VecDeque::from([self.object(
            image_path.to_owned(),
            info,
            &[],
            image_origin,
            host_origin,
        )]);
        while let Some(obj) = queue.pop_front() {
            for name in &obj.needed {
                if !is_plain_name(name) {
                    return Err(ClosureError::BadName {
                        binary: source.to_owned(),
                        object: obj.image_path.clone(),
                        name: name.clone(),
                    });
                }
                if loaded.contains(name) {
                    continue;
                }
                let dirs: Vec<Dir> = obj.search.iter().chain(&defaults).cloned().collect();
                let (dir, data, dep) =
                    self.find(name, &dirs, machine)
                        .ok_or_else(|| ClosureError::Missing {
                            binary: source.to_owned(),
                            library: name.clone(),
                            needed_by: obj.image_path.clone(),
                            searched: dirs
                                .iter()
                                .map(|d| d.image.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        })?;
                let lib_path = format!("{}/{name}", dir.image.trim_end_matches('/'));
                loaded.insert(name.clone());
                loaded.extend(dep.soname.clone());
                queue.push_back(self.object(
                    lib_path.clone(),
                    dep,
                    &obj.rpath_chain,
                    &dir.image,
                    &dir.host,
                ));
                libs.push(Lib {
                    image_path: lib_path,
                    host_path: dir.host.join(name),
                    data,
                    mode: 0o644,
                });
            }
        }
        Ok(libs)
    }

    fn interpreter(
        &self,
        binary: &Path,
        interp: &str,
        loaded: &mut BTreeSet<String>,
    ) -> Result<Lib, ClosureError> {
        let image_path =
            normalise(interp)
                .filter(|p| p == interp)
                .ok_or_else(|| ClosureError::BadName {
                    binary: binary.to_owned(),
                    object: binary.display().to_string(),
                    name: interp.to_owned(),
                })?;
        let host_path = self.on_host(&image_path);
        let data = fs::read(&host_path).map_err(|_| ClosureError::NoInterpreter {
            binary: binary.to_owned(),
            interp: interp.to_owned(),
        })?;
        let info = elf::dynamic(&data).map_err(|e| ClosureError::Elf {
            path: host_path.clone(),
            source: e,
        })?;
        // Objects that name the loader in DT_NEEDED (libc does) get the running one.
        loaded.extend(info.soname);
        loaded.extend(image_path.rsplit('/').next().map(str::to_owned));
        Ok(Lib {
            image_path,
            host_path,
            data,
            mode: 0o755,
        })
    }

    fn object(
        &self,
        image_path: String,
        info: elf::Dynamic,
        inherited: &[Dir],
        image_origin: &str,
        host_origin: &Path,
    ) -> Object {
        // DT_RUNPATH, when present, is all an object searches besides the defaults, and its own
        // DT_RPATH is ignored; otherwise it searches its DT_RPATH, then its loaders'. Either way
        // its dependencies inherit the DT_RPATH chain.
        let (search, rpath_chain) = if info.runpath.is_empty() {
            let mut chain = self.search_dirs(&info.rpath, image_origin, host_origin);
            chain.extend_from_slice(inherited);
            (chain.clone(), chain)
        } else {
            let runpath = self.search_dirs(&info.runpath, image_origin, host_origin);
            (runpath, inherited.to_vec())
        };
        Object {
            image_path,
            needed: info.needed,
            search,
            rpath_chain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::fake::{Fake, X86_64};
    use std::process::Command;

    fn put(root: &Path, path: &str, data: &[u8]) {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    fn lib(needed: &[&str], soname: &str) -> Vec<u8> {
        Fake {
            machine: X86_64,
            needed,
            soname: Some(soname),
            ..Fake::default()
        }
        .build()
    }

    fn paths(libs: &[Lib]) -> Vec<&str> {
        libs.iter().map(|l| l.image_path.as_str()).collect()
    }

    /// A small root: loader, libc (which names the loader), and a library behind a symlink.
    fn sysroot() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        put(r, "/lib64/ld-fake.so.2", &lib(&[], "ld-fake.so.2"));
        put(
            r,
            "/lib/x86_64-linux-gnu/libc.so.6",
            &lib(&["ld-fake.so.2"], "libc.so.6"),
        );
        put(
            r,
            "/usr/lib/x86_64-linux-gnu/libb.so.1.2.3",
            &lib(&["libc.so.6"], "libb.so.1"),
        );
        std::os::unix::fs::symlink(
            "../../usr/lib/x86_64-linux-gnu/libb.so.1.2.3",
            r.join("lib/x86_64-linux-gnu/libb.so.1"),
        )
        .unwrap();
        root
    }

    fn binary(needed: &[&str], runpath: Option<&str>) -> Vec<u8> {
        Fake {
            machine: X86_64,
            interp: Some("/lib64/ld-fake.so.2"),
            needed,
            runpath,
            ..Fake::default()
        }
        .build()
    }

    #[test]
    fn interpreter_then_transitive_libraries_once_each() {
        let root = sysroot();
        let r = Resolver::new(root.path(), DEFAULT_DIRS);
        let bin = binary(&["libb.so.1", "libc.so.6", "libb.so.1"], None);
        let libs = r
            .closure("/sbin/tool", &root.path().join("usr/sbin/tool"), &bin)
            .unwrap();
        assert_eq!(
            paths(&libs),
            [
                "/lib64/ld-fake.so.2",
                "/lib/x86_64-linux-gnu/libb.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6"
            ]
        );
        // The symlink's target's bytes, under the NEEDED name.
        let real = fs::read(root.path().join("usr/lib/x86_64-linux-gnu/libb.so.1.2.3")).unwrap();
        assert_eq!(libs[1].data, real);
        assert_eq!((libs[0].mode, libs[1].mode), (0o755, 0o644));
    }

    #[test]
    fn runpath_with_origin_and_wrong_machine_skipped() {
        let root = sysroot();
        let r = root.path();
        // $ORIGIN is the binary's directory: in the image (/opt/app/bin) for where the library
        // goes, on the host (the source's directory) for where it is read from.
        put(
            r,
            "/src/app/lib/libapp.so.1",
            &lib(&["libc.so.6"], "libapp.so.1"),
        );
        // A library for another machine comes first in the search order and must be skipped.
        let other = Fake {
            machine: 3,
            soname: Some("libz.so.1"),
            ..Fake::default()
        }
        .build();
        put(r, "/lib/x86_64-linux-gnu/libz.so.1", &other);
        put(r, "/usr/lib/libz.so.1", &lib(&[], "libz.so.1"));
        let bin = binary(&["libapp.so.1", "libz.so.1"], Some("$ORIGIN/../lib"));
        put(r, "/src/app/bin/app", &bin);
        let libs = Resolver::new(r, DEFAULT_DIRS)
            .closure("/opt/app/bin/app", &r.join("src/app/bin/app"), &bin)
            .unwrap();
        assert_eq!(
            paths(&libs),
            [
                "/lib64/ld-fake.so.2",
                "/opt/app/lib/libapp.so.1",
                "/usr/lib/libz.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6"
            ]
        );
    }

    #[test]
    fn static_binaries_have_no_closure() {
        let r = Resolver::host();
        let bb = fs::read("/bin/busybox").unwrap();
        assert_eq!(
            r.closure("/bin/busybox", Path::new("/bin/busybox"), &bb)
                .unwrap(),
            []
        );
        let e = r
            .closure("/x", Path::new("/x"), b"#!/bin/sh\n")
            .unwrap_err();
        assert!(e.to_string().contains("not a 64-bit"), "{e}");
    }

    #[test]
    fn clear_errors() {
        let root = sysroot();
        let r = Resolver::new(root.path(), DEFAULT_DIRS);
        let src = root.path().join("usr/sbin/tool");
        let e = r
            .closure("/sbin/tool", &src, &binary(&["libnope.so.9"], None))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("usr/sbin/tool") && e.contains("libnope.so.9"),
            "{e}"
        );
        assert!(e.contains("/usr/lib/x86_64-linux-gnu"), "{e}");
        let e = r
            .closure("/sbin/tool", &src, &binary(&["../../etc/shadow"], None))
            .unwrap_err();
        assert!(matches!(e, ClosureError::BadName { .. }), "{e}");
        let no_loader = Fake {
            machine: X86_64,
            interp: Some("/lib64/ld-missing.so.2"),
            ..Fake::default()
        }
        .build();
        let e = r.closure("/sbin/tool", &src, &no_loader).unwrap_err();
        assert!(e.to_string().contains("ld-missing.so.2"), "{e}");
        let sneaky = Fake {
            machine: X86_64,
            interp: Some("/lib64/../../ld.so"),
            ..Fake::default()
        }
        .build();
        let e = r.closure("/sbin/tool", &src, &sneaky).unwrap_err();
        assert!(matches!(e, ClosureError::BadName { .. }), "{e}");
    }

    #[test]
    fn search_dirs_and_names() {
        let r = Resolver::new("/root", &[]);
        let origin = |e: &str| r.search_dir(e, "/opt/a/bin", Path::new("/host/a/bin"));
        assert_eq!(
            origin("$ORIGIN/../lib"),
            Some(Dir {
                image: "/opt/a/lib".into(),
                host: "/host/a/bin/../lib".into()
            })
        );
        assert_eq!(origin("${ORIGIN}").unwrap().image, "/opt/a/bin");
        assert_eq!(
            origin("/usr/lib/x").unwrap().host,
            Path::new("/root/usr/lib/x")
        );
        assert_eq!(origin("$LIB/x"), None);
        assert_eq!(origin("$ORIGINAL"), None);
        assert_eq!(origin("relative"), None);
        assert_eq!(normalise("/a/./b//../c/"), Some("/a/c".into()));
        assert_eq!(normalise("/.."), Some("/".into()));
        assert_eq!(parent("/init"), "/");
        assert_eq!(parent("/sbin/x"), "/sbin");
    }

    /// `ldd`'s files for a binary (the vDSO has none).
    fn ldd(bin: &str) -> BTreeSet<String> {
        let out = Command::new("ldd")
            .arg(bin)
            .output()
            .expect("ldd (libc-bin)");
        assert!(out.status.success(), "ldd {bin}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let path = l.split_once("=> ").map_or(l, |(_, p)| p);
                let path = path.split(" (").next()?;
                path.starts_with('/').then(|| path.to_owned())
            })
            .collect()
    }

    #[test]
    fn host_closures_match_ldd() {
        let r = Resolver::host();
        // The checkers the image carries (scripts/setup.sh installs them), and bash.
        for bin in [
            "/sbin/xfs_repair",
            "/sbin/fsck.fat",
            "/bin/btrfs",
            "/bin/bash",
        ] {
            let data = fs::read(bin).unwrap_or_else(|e| panic!("{bin}: {e} (scripts/setup.sh)"));
            let libs = r.closure(bin, Path::new(bin), &data).unwrap();
            let ours: BTreeSet<String> = libs.iter().map(|l| l.image_path.clone()).collect();
            assert_eq!(ours.len(), libs.len(), "{bin}: duplicates in {libs:?}");
            assert_eq!(ours, ldd(bin), "{bin}");
        }
    }
}
