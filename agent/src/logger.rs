//! A small logger to the console (PID 1's stderr is /dev/console). One `write` per line, so
//! lines from different threads do not interleave.

use std::io::Write;

struct ConsoleLogger;

impl log::Log for ConsoleLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let line = format!("vmrescue: {:<5} {}\n", record.level(), record.args());
        // Nothing sensible is left to do if the console itself fails.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: ConsoleLogger = ConsoleLogger;

pub fn init() {
    // Fails only when a logger is already set, which leaves logging working.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}
