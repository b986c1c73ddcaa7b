//! Bytes for identifiers that must differ between boots (a run id, a machine ID): uniqueness,
//! not secrecy. The kernel's pool is asked without waiting for it to be seeded. Reading
//! `/dev/urandom` before that (Linux 5.18 and later) makes the kernel gather jitter entropy
//! first, which under TCG held the agent's first console frame back by up to a second.

use rustix::rand::{getrandom, GetRandomFlags};

/// `N` bytes from the kernel without waiting (`GRND_INSECURE`, else `GRND_NONBLOCK`), or
/// `None` when it has none to give.
pub fn unique_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    let got = getrandom(&mut bytes, GetRandomFlags::INSECURE)
        .or_else(|_| getrandom(&mut bytes, GetRandomFlags::NONBLOCK));
    matches!(got, Ok(n) if n == N).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_asks_give_different_bytes() {
        let a = unique_bytes::<16>().expect("the kernel gives bytes");
        let b = unique_bytes::<16>().expect("the kernel gives bytes");
        assert_ne!(a, b);
    }
}
