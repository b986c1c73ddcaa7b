//! How long the end-to-end tests wait, in one place. Each budget is several times what an
//! idle 2-core machine needs under TCG, so that a loaded CI machine or a busy developer machine
//! does not turn a correct product red. A budget is a limit, never a verdict: no test here
//! passes or fails by how fast something is (speed is measured in `bench/`), and a test of
//! "no report in time" uses an image that cannot report at all (`harness::silent_image`).

use std::time::Duration;

/// A rescue VM from its start to its report (idle: 2-5 s with the rescue kernel, about 40 s
/// for a libvirt cdrom boot through the BIOS).
pub const RESCUE: Duration = Duration::from_secs(600);

/// Eight rescues at once on two cores (idle: about 10 s with the rescue kernel).
pub const MANY_RESCUES: Duration = Duration::from_secs(1200);

/// The real Debian guest's own boot to its login prompt, and a verify boot's time limit
/// (`--verify-timeout`) where a verdict is expected: a boot that ends sooner ends the wait
/// (idle: about 35 s).
pub const GUEST_BOOT: Duration = Duration::from_secs(180);

/// A local state change the test waits for: a libvirt domain starting or going away, a
/// process ending after a signal, a watch event (idle: well under a second to a few seconds).
pub const SETTLE: Duration = Duration::from_secs(120);

/// A host command on hostile input that must end rather than hang or spin (idle: well under
/// ten seconds): the guard against an endless loop, not a measure of speed.
pub const MUST_END: Duration = Duration::from_secs(600);

/// `d` in whole seconds, for a command-line flag.
pub fn secs(d: Duration) -> String {
    d.as_secs().to_string()
}
