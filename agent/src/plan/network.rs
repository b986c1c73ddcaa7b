//! A lost `/etc`'s network configuration, rebuilt for the interfaces the guest's DHCP clients
//! leased addresses on ([`super::evidence::Lease`]), in the form of whatever configured its
//! network: netplan, NetworkManager, systemd-networkd or ifupdown (chosen by what leased
//! and what is installed). Only DHCP is ever rebuilt: a static address is recorded nowhere
//! outside `/etc`. Every file is a reviewed suggestion naming its evidence.

use vmrescue_discovery::osroot::Tree;

use super::evidence::{Client, Lease};
use super::{Action, Context, Plan};

/// What configured the guest's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    /// netplan, rendering for NetworkManager or systemd-networkd.
    Netplan {
        network_manager: bool,
    },
    NetworkManager,
    Networkd,
    Ifupdown,
}

const HEADER: &str = "Rebuilt by vmrescue from the guest's DHCP leases (review it).";

/// The stack: what leased the addresses, where it is installed, else what is installed.
fn stack(root: &dyn Tree, leases: &[Lease]) -> Option<Stack> {
    let has = |paths: &[&str]| paths.iter().any(|f| root.exists(f));
    let netplan = has(&["/usr/sbin/netplan", "/sbin/netplan"]);
    let nm = has(&["/usr/sbin/NetworkManager", "/sbin/NetworkManager"]);
    let ifupdown = has(&["/sbin/ifup", "/usr/sbin/ifup"]);
    let leased = |c: fn(&Client) -> bool| leases.iter().any(|l| c(&l.client));
    let nm_leased = nm && leased(|c| matches!(c, Client::NetworkManager { .. }));
    let networkd_leased = leased(|c| *c == Client::Networkd);
    let dhclient_leased = ifupdown && leased(|c| *c == Client::Dhclient);
    if netplan {
        return Some(Stack::Netplan {
            network_manager: nm_leased,
        });
    }
    [
        (nm_leased, Stack::NetworkManager),
        (networkd_leased, Stack::Networkd),
        (dhclient_leased || ifupdown, Stack::Ifupdown),
        (nm, Stack::NetworkManager),
    ]
    .into_iter()
    .find_map(|(yes, s)| yes.then_some(s))
}

/// Directories `paths` made where neither the guest nor the plan has them yet.
fn dirs(root: &dyn Tree, p: &mut Plan, paths: &[&str], why: &str) {
    for d in paths {
        if !root.exists(d) && !p.has(d) {
            p.push(
                Action::MakeDir {
                    path: (*d).into(),
                    mode: 0o755,
                },
                why,
                false,
            );
        }
    }
}

fn file(p: &mut Plan, path: String, text: String, mode: u32, why: String) {
    p.push(
        Action::WriteFile {
            path,
            content: text.into_bytes(),
            mode,
            uid: 0,
            gid: 0,
        },
        why,
        true,
    );
}

pub(super) fn plan(root: &dyn Tree, ctx: &Context, p: &mut Plan) {
    let leases = &ctx.evidence.dhcp;
    if leases.is_empty() {
        return;
    }
    let Some(stack) = stack(root, leases) else {
        p.notes.push(
            "the guest leased addresses by DHCP, but no network configuration tool it has is \
             known (netplan, NetworkManager, systemd-networkd, ifupdown): its network is not \
             rebuilt"
                .into(),
        );
        return;
    };
    let from = leases
        .iter()
        .map(|l| format!("{} from {}", l.iface, l.source))
        .collect::<Vec<_>>()
        .join(", ");
    let why = |path: &str| {
        format!(
            "{path} is missing: rebuilt for DHCP on the interfaces the guest leased addresses on ({from})"
        )
    };
    match stack {
        Stack::Ifupdown => {
            let path = "/etc/network/interfaces";
            if root.exists(path) || p.has(path) {
                return;
            }
            let mut text = format!(
                "# {HEADER}\nsource /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n"
            );
            for l in leases {
                let i = &l.iface;
                text.push_str(&format!("\nallow-hotplug {i}\niface {i} inet dhcp\n"));
            }
            dirs(root, p, &["/etc/network"], "for ifupdown's configuration");
            file(p, path.into(), text, 0o644, why(path));
        }
        Stack::Netplan { network_manager } => {
            let path = "/etc/netplan/50-vmrescue.yaml";
            if root.exists("/etc/netplan") || p.has(path) {
                return;
            }
            let renderer = if network_manager {
                "NetworkManager"
            } else {
                "networkd"
            };
            let mut text = format!(
                "# {HEADER}\nnetwork:\n  version: 2\n  renderer: {renderer}\n  ethernets:\n"
            );
            for l in leases {
                text.push_str(&format!("    {}:\n      dhcp4: true\n", l.iface));
            }
            dirs(root, p, &["/etc/netplan"], "for netplan's configuration");
            // netplan warns about a configuration others can read.
            file(p, path.into(), text, 0o600, why(path));
        }
        Stack::NetworkManager => {
            let dir = "/etc/NetworkManager/system-connections";
            if root.exists(dir) {
                return;
            }
            dirs(
                root,
                p,
                &["/etc/NetworkManager", dir],
                "for NetworkManager's connections",
            );
            for l in leases {
                let path = format!("{dir}/vmrescue-{}.nmconnection", l.iface);
                let uuid = match &l.client {
                    Client::NetworkManager {
                        connection: Some(u),
                    } => format!("uuid={u}\n"),
                    _ => String::new(),
                };
                let text = format!(
                    "# {HEADER}\n[connection]\nid={i}\n{uuid}type=ethernet\ninterface-name={i}\n\n\
                     [ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n",
                    i = l.iface
                );
                // NetworkManager ignores a connection file others can read.
                let why = why(&path);
                file(p, path, text, 0o600, why);
            }
        }
        Stack::Networkd => {
            let dir = "/etc/systemd/network";
            if root.exists(dir) {
                return;
            }
            dirs(
                root,
                p,
                &["/etc/systemd", dir],
                "for systemd-networkd's configuration",
            );
            for l in leases {
                let path = format!("{dir}/50-vmrescue-{}.network", l.iface);
                let text = format!(
                    "# {HEADER}\n[Match]\nName={}\n\n[Network]\nDHCP=yes\n",
                    l.iface
                );
                let why = why(&path);
                file(p, path, text, 0o644, why);
            }
            // It was enabled by hand (Debian ships it disabled), so nothing else enables it.
            let units = super::unit_links::UNIT_DIR;
            let wants = format!("{units}/multi-user.target.wants");
            let sockets = format!("{units}/sockets.target.wants");
            dirs(
                root,
                p,
                &[units, &wants, &sockets],
                "for systemd-networkd's unit links",
            );
            for (link, unit) in [
                (&wants, "systemd-networkd.service"),
                (&sockets, "systemd-networkd.socket"),
            ] {
                let path = format!("{link}/{unit}");
                let target = ["/lib/systemd/system", "/usr/lib/systemd/system"]
                    .into_iter()
                    .map(|d| format!("{d}/{unit}"))
                    .find(|t| root.exists(t));
                if let (Some(target), false) = (target, root.exists(&path) || p.has(&path)) {
                    p.push(
                        Action::Symlink { path, target },
                        format!(
                            "systemd-networkd leased the guest's addresses ({from}): {unit} \
                             enabled again"
                        ),
                        true,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::evidence::Evidence;
    use super::super::testing::{ctx, Guest};
    use super::*;

    fn lease(iface: &str, client: Client) -> Lease {
        Lease {
            iface: iface.into(),
            client,
            source: format!("the journal for {iface}"),
        }
    }

    /// The plan's files (path, content, mode) and links for a guest with `installed` files.
    fn planned(installed: &[&str], dhcp: Vec<Lease>) -> (Vec<(String, String, u32)>, Vec<String>) {
        let entries: Vec<(&str, Option<&str>)> = installed.iter().map(|f| (*f, Some(""))).collect();
        let g = Guest::new(&entries);
        let evidence = Evidence {
            dhcp,
            ..Default::default()
        };
        let c = Context {
            evidence: &evidence,
            ..ctx(&[], Some("debian"))
        };
        let mut p = Plan::default();
        plan(&g.tree(), &c, &mut p);
        let mut files = Vec::new();
        let mut links = Vec::new();
        for s in &p.steps {
            match &s.action {
                Action::WriteFile {
                    path,
                    content,
                    mode,
                    ..
                } => files.push((
                    path.clone(),
                    String::from_utf8_lossy(content).into_owned(),
                    *mode,
                )),
                Action::Symlink { path, target } => links.push(format!("{path} -> {target}")),
                _ => {}
            }
        }
        (files, links)
    }

    #[test]
    fn netplan_renders_for_whoever_leased() {
        let (files, _) = planned(
            &["/usr/sbin/netplan", "/usr/sbin/NetworkManager"],
            vec![lease("ens3", Client::NetworkManager { connection: None })],
        );
        assert_eq!(files.len(), 1);
        let (path, text, mode) = &files[0];
        assert_eq!(
            (path.as_str(), *mode),
            ("/etc/netplan/50-vmrescue.yaml", 0o600)
        );
        assert!(
            text.ends_with(
                "renderer: NetworkManager\n  ethernets:\n    ens3:\n      dhcp4: true\n"
            ),
            "{text}"
        );
        let (files, _) = planned(
            &["/usr/sbin/netplan"],
            vec![lease("ens3", Client::Networkd)],
        );
        assert!(files[0].1.contains("renderer: networkd\n"));
    }

    #[test]
    fn network_manager_keeps_the_connection_uuid() {
        let uuid = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
        let (files, links) = planned(
            &["/usr/sbin/NetworkManager", "/sbin/ifup"],
            vec![lease(
                "enp1s0",
                Client::NetworkManager {
                    connection: Some(uuid.into()),
                },
            )],
        );
        assert!(links.is_empty());
        let (path, text, mode) = &files[0];
        assert_eq!(
            (path.as_str(), *mode),
            (
                "/etc/NetworkManager/system-connections/vmrescue-enp1s0.nmconnection",
                0o600
            )
        );
        assert!(
            text.contains(&format!(
                "\nid=enp1s0\nuuid={uuid}\ntype=ethernet\ninterface-name=enp1s0\n"
            )),
            "{text}"
        );
        assert!(text.contains("[ipv4]\nmethod=auto\n"));
    }

    #[test]
    fn networkd_gets_its_files_and_is_enabled_again() {
        let (files, links) = planned(
            &[
                "/lib/systemd/system/systemd-networkd.service",
                "/lib/systemd/system/systemd-networkd.socket",
            ],
            vec![lease("ens3", Client::Networkd)],
        );
        assert_eq!(files[0].0, "/etc/systemd/network/50-vmrescue-ens3.network");
        assert!(files[0]
            .1
            .ends_with("[Match]\nName=ens3\n\n[Network]\nDHCP=yes\n"));
        assert_eq!(
            links,
            [
                "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service -> /lib/systemd/system/systemd-networkd.service",
                "/etc/systemd/system/sockets.target.wants/systemd-networkd.socket -> /lib/systemd/system/systemd-networkd.socket"
            ]
        );
    }

    #[test]
    fn ifupdown_for_dhclient_and_nothing_without_a_tool_or_a_lease() {
        let (files, _) = planned(&["/sbin/ifup"], vec![lease("eth0", Client::Dhclient)]);
        assert_eq!(files[0].0, "/etc/network/interfaces");
        assert!(files[0]
            .1
            .ends_with("\nallow-hotplug eth0\niface eth0 inet dhcp\n"));
        let (files, links) = planned(&[], vec![lease("eth0", Client::Dhclient)]);
        assert!(files.is_empty() && links.is_empty());
        let (files, _) = planned(&["/sbin/ifup"], vec![]);
        assert!(files.is_empty());
    }
}
