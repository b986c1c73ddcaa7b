//! Which filesystems are checked together: one sequence per disk (checks on one disk would
//! only compete for its head and queue), the disks in parallel. Within a disk the order is the
//! guest's fstab pass number, the root first, then pass 1, 2, ..., then filesystems fstab does
//! not check (pass 0) or does not list. Pure.

/// A filesystem waiting to be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<T> {
    /// Disk it is on (`vda` for `vda1`).
    pub disk: String,
    pub device: String,
    /// fstab pass number, if fstab lists it.
    pub passno: Option<u32>,
    pub is_root: bool,
    pub data: T,
}

fn rank<T>(i: &Item<T>) -> (u8, u32) {
    match (i.is_root, i.passno) {
        (true, _) => (0, 0),
        (false, Some(n)) if n > 0 => (1, n),
        _ => (2, 0),
    }
}

/// Groups per disk, disks in the order first seen, each group in check order.
pub fn groups<T>(items: Vec<Item<T>>) -> Vec<Vec<Item<T>>> {
    let mut out: Vec<Vec<Item<T>>> = Vec::new();
    for i in items {
        match out.iter_mut().find(|g| g[0].disk == i.disk) {
            Some(g) => g.push(i),
            None => out.push(vec![i]),
        }
    }
    for g in &mut out {
        // Stable: equal ranks keep discovery (partition) order.
        g.sort_by_key(rank);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(disk: &str, device: &str, passno: Option<u32>, is_root: bool) -> Item<()> {
        Item {
            disk: disk.into(),
            device: device.into(),
            passno,
            is_root,
            data: (),
        }
    }

    #[test]
    fn root_first_then_pass_numbers_per_disk() {
        let g = groups(vec![
            item("vda", "vda1", Some(2), false), // /boot
            item("vdb", "vdb1", Some(2), false), // /home
            item("vda", "vda3", None, false),    // unlisted
            item("vda", "vda2", Some(1), true),  // root
            item("vda", "vda4", Some(0), false), // not checked at boot
            item("vda", "vda5", Some(3), false),
            item("vdc", "vdc", None, false),
        ]);
        let names: Vec<Vec<&str>> = g
            .iter()
            .map(|g| g.iter().map(|i| i.device.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            [
                vec!["vda2", "vda1", "vda5", "vda3", "vda4"],
                vec!["vdb1"],
                vec!["vdc"]
            ]
        );
    }

    #[test]
    fn root_named_with_pass_two_still_goes_first() {
        let g = groups(vec![
            item("vda", "vda1", Some(1), false),
            item("vda", "vda2", Some(2), true),
        ]);
        assert_eq!(g[0][0].device, "vda2");
    }
}
