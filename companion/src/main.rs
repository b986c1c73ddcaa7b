//! `vmrescue`: the host CLI. The work lives in the library; this only parses and exits.

use clap::Parser;

fn main() {
    let code = vmrescue_companion::cli::run(vmrescue_companion::cli::Cli::parse());
    #[allow(clippy::exit)]
    std::process::exit(code)
}
