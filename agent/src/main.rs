//! `vmrescue-agent`: PID 1 of the rescue initramfs. The work lives in the library's modules;
//! `main` only wires them and guarantees that PID 1 never returns.

use std::time::Instant;

use vmrescue_agent::{finish, logger, rescue};

fn main() {
    let started = Instant::now();
    logger::init();
    std::panic::set_hook(Box::new(|info| log::error!("internal error: {info}")));
    let after = rescue::run(started);
    finish::finish(after)
}
