//! `vmrescue-agent`: PID 1 of the rescue initramfs. The work lives in the modules; `main` only
//! wires them and guarantees that PID 1 never returns.

mod boot;
mod cmdline;
mod disks;
mod finish;
mod fsck;
mod inspect;
mod logger;
mod modules;
mod port;
mod proc;
mod reporter;
mod rescue;
mod signals;
mod verdict;

use std::time::Instant;

fn main() {
    let started = Instant::now();
    logger::init();
    std::panic::set_hook(Box::new(|info| log::error!("internal error: {info}")));
    let after = rescue::run(started);
    finish::finish(after)
}
