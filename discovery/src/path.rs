//! Lexical handling of absolute paths inside a filesystem root (a guest's, or the host's as
//! ld.so sees it). Nothing here touches a filesystem.

/// `/a/./b//../c` -> `/a/c`: collapses `.` and `..` the way a lookup confined to a root does,
/// never going above `/` (`/../x` is `/x`). A relative path is taken from `/`.
pub fn clamp_at_root(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `/srv//./data/` -> `/srv/data`: drops empty and `.` components but keeps `..`, so that a
/// caller can refuse a path that tries to climb.
pub fn tidy_keep_dotdot(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_dotdot_at_the_root() {
        assert_eq!(clamp_at_root("/a/./b//../c"), "/a/c");
        assert_eq!(clamp_at_root("/../../etc/shadow"), "/etc/shadow");
        assert_eq!(clamp_at_root("lib/x"), "/lib/x");
        assert_eq!(clamp_at_root("/"), "/");
    }

    #[test]
    fn keeps_dotdot_for_refusal() {
        assert_eq!(tidy_keep_dotdot("/srv//./data/"), "/srv/data");
        assert_eq!(tidy_keep_dotdot("/srv/../etc"), "/srv/../etc");
        assert_eq!(tidy_keep_dotdot(""), "/");
    }
}
