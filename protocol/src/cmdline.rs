//! The one kernel command line builder: checked inserts (every key and value printable ASCII
//! without spaces, quotes or stray `=`, the whole within the kernel's limit), and the agent's
//! settings written by the parameter table ([`crate::params`]) after its own validation. Every
//! line that boots the agent is made here: `rescue --disk`, libvirt kernel boots, the media's
//! boot menus and the boot copy.

use std::fmt;

use crate::params::{self, Settings};

/// x86's COMMAND_LINE_SIZE, terminating NUL included.
pub const MAX_LEN: usize = 2047;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    #[error(
        "kernel parameter {0:?} has a character that is not printable ASCII, a space or a quote"
    )]
    BadChar(String),
    #[error("kernel parameter key {0:?} is empty or contains '='")]
    BadKey(String),
    #[error("kernel command line longer than {MAX_LEN} bytes")]
    TooLong,
    /// A setting the agent would refuse.
    #[error("{0}")]
    Setting(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline(String);

fn check(s: &str) -> Result<(), CmdlineError> {
    if s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\'')
    {
        Ok(())
    } else {
        Err(CmdlineError::BadChar(s.to_owned()))
    }
}

impl Cmdline {
    pub fn new() -> Self {
        Self::default()
    }

    fn append(&mut self, word: &str) -> Result<(), CmdlineError> {
        let extra = word.len() + usize::from(!self.0.is_empty());
        if self.0.len() + extra > MAX_LEN {
            return Err(CmdlineError::TooLong);
        }
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(word);
        Ok(())
    }

    /// Adds a bare flag such as `quiet`.
    pub fn flag(&mut self, key: &str) -> Result<&mut Self, CmdlineError> {
        check(key)?;
        if key.is_empty() || key.contains('=') {
            return Err(CmdlineError::BadKey(key.to_owned()));
        }
        self.append(key)?;
        Ok(self)
    }

    /// Adds `key=value`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self, CmdlineError> {
        check(key)?;
        check(value)?;
        if key.is_empty() || key.contains('=') {
            return Err(CmdlineError::BadKey(key.to_owned()));
        }
        self.append(&format!("{key}={value}"))?;
        Ok(self)
    }

    /// Adds the agent's `settings` (validated first), each `vmrescue.KEY=VALUE` as the
    /// parameter table writes it.
    pub fn settings(&mut self, settings: &Settings) -> Result<&mut Self, CmdlineError> {
        params::validate(settings).map_err(CmdlineError::Setting)?;
        for (key, value) in params::emit(settings) {
            self.set(&key, &value)?;
        }
        Ok(self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cmdline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_line() {
        let mut c = Cmdline::new();
        c.set("console", "ttyS0")
            .unwrap()
            .flag("quiet")
            .unwrap()
            .set("vmrescue.mode", "repair")
            .unwrap();
        assert_eq!(c.as_str(), "console=ttyS0 quiet vmrescue.mode=repair");
    }

    #[test]
    fn rejects_each_bad_input() {
        let mut c = Cmdline::new();
        assert_eq!(c.set("a", "b c"), Err(CmdlineError::BadChar("b c".into())));
        assert_eq!(
            c.set("a", "x\"y"),
            Err(CmdlineError::BadChar("x\"y".into()))
        );
        assert_eq!(c.set("a", "é"), Err(CmdlineError::BadChar("é".into())));
        assert_eq!(c.set("a=b", "c"), Err(CmdlineError::BadKey("a=b".into())));
        assert_eq!(c.flag(""), Err(CmdlineError::BadKey("".into())));
        assert_eq!(c.set("a", &"x".repeat(MAX_LEN)), Err(CmdlineError::TooLong));
        assert_eq!(
            c.as_str(),
            "",
            "a rejected insert leaves the line unchanged"
        );
    }
}
