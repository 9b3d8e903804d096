//! Regions (time zones, gateway names) and source addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::Rng;

use crate::rng::pick_weighted;

/// Where a tenant mostly works from.
#[derive(Debug)]
pub(crate) struct Region {
    /// Used in gateway ids.
    pub code: &'static str,
    /// `(UTC offset in minutes, weight)`; fixed offsets, no daylight saving.
    pub offsets: &'static [(i32, f32)],
}

pub(crate) static REGIONS: &[Region] = &[
    Region {
        code: "use1",
        offsets: &[(-300, 6.0), (-360, 3.0), (-240, 1.0)],
    },
    Region {
        code: "euw1",
        offsets: &[(0, 3.0), (60, 6.0), (120, 2.0)],
    },
    Region {
        code: "usw2",
        offsets: &[(-480, 7.0), (-420, 3.0)],
    },
    Region {
        code: "apne1",
        offsets: &[(540, 4.0), (480, 4.0), (600, 2.0)],
    },
    Region {
        code: "aps1",
        offsets: &[(330, 1.0)],
    },
];

impl Region {
    pub(crate) fn pick_offset<R: Rng>(&self, rng: &mut R) -> i32 {
        let weights: Vec<f32> = self.offsets.iter().map(|o| o.1).collect();
        self.offsets[pick_weighted(rng, &weights)].0
    }
}

/// First octets of ISP and office ranges (no private or reserved ranges).
const ISP: &[u8] = &[
    24, 50, 64, 66, 67, 68, 69, 71, 73, 76, 81, 82, 84, 86, 88, 90, 92, 94, 96, 98, 99, 108, 109,
    151, 173, 174, 212, 217,
];
/// First octets of public cloud ranges.
const CLOUD: &[u8] = &[3, 13, 18, 20, 34, 35, 40, 44, 52, 54];
/// First octets of hosting and VPS ranges often seen in abuse.
const HOSTING: &[u8] = &[
    5, 23, 31, 37, 45, 46, 62, 77, 80, 91, 103, 141, 146, 176, 178, 185, 193, 194, 195,
];

fn v4<R: Rng>(rng: &mut R, first: &[u8]) -> IpAddr {
    let a = first[rng.random_range(0..first.len())];
    IpAddr::V4(Ipv4Addr::new(
        a,
        rng.random(),
        rng.random(),
        rng.random_range(1..=254),
    ))
}

/// An office's NAT address.
pub(crate) fn office_ip<R: Rng>(rng: &mut R) -> IpAddr {
    v4(rng, ISP)
}

/// A home, hotel or mobile address; sometimes IPv6.
pub(crate) fn home_ip<R: Rng>(rng: &mut R) -> IpAddr {
    if rng.random_bool(0.15) {
        let prefix = if rng.random_bool(0.5) { 0x2a02 } else { 0x2600 };
        IpAddr::V6(Ipv6Addr::new(
            prefix,
            rng.random(),
            rng.random(),
            rng.random(),
            0,
            0,
            0,
            rng.random_range(1..=0xffff),
        ))
    } else {
        v4(rng, ISP)
    }
}

/// A cloud egress address (service accounts, corporate VPN).
pub(crate) fn cloud_ip<R: Rng>(rng: &mut R) -> IpAddr {
    v4(rng, CLOUD)
}

/// An address an attacker works from.
pub(crate) fn attacker_ip<R: Rng>(rng: &mut R) -> IpAddr {
    v4(rng, HOSTING)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Stream, stream};

    #[test]
    fn addresses_are_global_looking() {
        let mut rng = stream(1, Stream::Population, 0, 0);
        for _ in 0..500 {
            for ip in [
                office_ip(&mut rng),
                home_ip(&mut rng),
                cloud_ip(&mut rng),
                attacker_ip(&mut rng),
            ] {
                match ip {
                    IpAddr::V4(v4) => {
                        assert!(
                            !v4.is_private() && !v4.is_loopback() && !v4.is_unspecified(),
                            "{v4}"
                        );
                        assert!(!v4.is_broadcast() && !v4.is_documentation(), "{v4}");
                    }
                    IpAddr::V6(v6) => assert!(!v6.is_loopback() && !v6.is_unspecified(), "{v6}"),
                }
            }
        }
    }
}
