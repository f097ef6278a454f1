//! One configured upstream as users write it: an address, optionally
//! followed by `weight=N`, `max-conns=N` and `backup`, like a `server` line
//! in an nginx `upstream` block (`tcp:10.0.0.5:9000 weight=3 backup`).

use std::fmt;
use std::str::FromStr;

use super::super::UpstreamAddr;

/// An upstream of the config: where, how much of the load, how many
/// connections at most, and whether only while every other one is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    pub address: UpstreamAddr,
    /// Share of the requests relative to the others (≥ 1).
    pub weight: u32,
    /// Most connections to it; `None` = the pool's size (`max-upstream-conns`).
    pub max_conns: Option<usize>,
    /// Used only while every non-backup upstream is down.
    pub backup: bool,
}

impl UpstreamSpec {
    /// An upstream with the defaults: weight 1, the pool's size, not a backup.
    pub fn new(address: UpstreamAddr) -> UpstreamSpec {
        UpstreamSpec {
            address,
            weight: 1,
            max_conns: None,
            backup: false,
        }
    }

    /// The highest weight accepted: sums of weights stay far from overflow.
    pub const MAX_WEIGHT: u32 = 1000;

    /// Checks a weight as given in a flag or a file.
    pub fn check_weight(weight: i64) -> Result<u32, String> {
        u32::try_from(weight)
            .ok()
            .filter(|w| (1..=Self::MAX_WEIGHT).contains(w))
            .ok_or_else(|| format!("weight must be 1-{}, not {weight}", Self::MAX_WEIGHT))
    }

    /// Checks a connection limit as given in a flag or a file.
    pub fn check_max_conns(max: i64) -> Result<usize, String> {
        usize::try_from(max)
            .ok()
            .filter(|m| *m >= 1)
            .ok_or_else(|| format!("max-conns must be at least 1, not {max}"))
    }
}

impl From<UpstreamAddr> for UpstreamSpec {
    fn from(address: UpstreamAddr) -> UpstreamSpec {
        UpstreamSpec::new(address)
    }
}

impl FromStr for UpstreamSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<UpstreamSpec, String> {
        let mut words = text.split_whitespace();
        let address = words
            .next()
            .ok_or_else(|| "empty: expected `unix:/path/to.sock` or `tcp:host:port`".to_owned())?
            .parse::<UpstreamAddr>()
            .map_err(|e| e.to_string())?;
        let mut spec = UpstreamSpec::new(address);
        for word in words {
            let number = |value: &str| {
                value
                    .parse::<i64>()
                    .map_err(|_| format!("`{word}`: expected a whole number"))
            };
            match word.split_once('=') {
                Some(("weight", value)) => spec.weight = Self::check_weight(number(value)?)?,
                Some(("max-conns", value)) => {
                    spec.max_conns = Some(Self::check_max_conns(number(value)?)?)
                }
                None if word == "backup" => spec.backup = true,
                _ => {
                    return Err(format!(
                        "`{word}`: after the address, only weight=N, max-conns=N and backup"
                    ))
                }
            }
        }
        Ok(spec)
    }
}

impl fmt::Display for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)?;
        if self.weight != 1 {
            write!(f, " weight={}", self.weight)?;
        }
        if let Some(max) = self.max_conns {
            write!(f, " max-conns={max}")?;
        }
        if self.backup {
            write!(f, " backup")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_and_its_options() {
        let spec: UpstreamSpec = "tcp:10.0.0.5:9000 weight=3 max-conns=8 backup"
            .parse()
            .unwrap();
        assert_eq!(spec.address.to_string(), "tcp:10.0.0.5:9000");
        assert_eq!(
            (spec.weight, spec.max_conns, spec.backup),
            (3, Some(8), true)
        );
        assert_eq!(
            spec.to_string(),
            "tcp:10.0.0.5:9000 weight=3 max-conns=8 backup"
        );
        let plain: UpstreamSpec = "unix:/run/php.sock".parse().unwrap();
        assert_eq!(
            plain,
            UpstreamSpec::new("unix:/run/php.sock".parse().unwrap())
        );
        assert_eq!(plain.to_string(), "unix:/run/php.sock");
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for (bad, says) in [
            ("", "empty"),
            ("tcp:h:9000 weight=0", "weight must be 1-1000, not 0"),
            ("tcp:h:9000 weight=x", "expected a whole number"),
            ("tcp:h:9000 weight=1001", "weight must be"),
            ("tcp:h:9000 max-conns=0", "max-conns must be at least 1"),
            ("tcp:h:9000 down", "only weight=N, max-conns=N and backup"),
            ("h:9000", "expected `unix:/path/to.sock`"),
        ] {
            let error = bad.parse::<UpstreamSpec>().unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
