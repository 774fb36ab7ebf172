//! Durations in Go's syntax (`90s`, `2m0s`, `1h30m`, `1.5h`, `300ms`), as kubeadm's
//! configuration and flags spell them, parsed and printed the way Go's `time` package does.

use std::fmt;
use std::time::Duration;

/// A non-negative duration that reads and prints in Go's `time.Duration` syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}; write it in Go's syntax, like \"90s\", \"2m0s\" or \"1h30m\"")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

impl GoDuration {
    /// Parses Go's duration syntax. Negative durations are refused: no kubeadm setting
    /// that this tool reads has a meaning for them.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let err = |reason| DurationError {
            input: input.to_string(),
            reason,
        };
        let mut s = input;
        if let Some(rest) = s.strip_prefix('+') {
            s = rest;
        } else if s.starts_with('-') {
            return Err(err("negative durations are not allowed"));
        }
        if s == "0" {
            return Ok(Self(Duration::ZERO));
        }
        if s.is_empty() {
            return Err(err("empty"));
        }
        let mut total_nanos: u128 = 0;
        while !s.is_empty() {
            let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
            let (int_part, rest) = s.split_at(int_len);
            let (frac_part, rest) = match rest.strip_prefix('.') {
                Some(r) => {
                    let n = r.bytes().take_while(u8::is_ascii_digit).count();
                    r.split_at(n)
                }
                None => ("", rest),
            };
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(err("expected a number"));
            }
            let unit_len = rest
                .char_indices()
                .find(|(_, c)| c.is_ascii_digit() || *c == '.')
                .map_or(rest.len(), |(i, _)| i);
            let (unit, rest) = rest.split_at(unit_len);
            if unit.is_empty() {
                return Err(err("missing unit (use ns, us, ms, s, m or h)"));
            }
            let scale = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(|| err("unknown unit (use ns, us, ms, s, m or h)"))?;
            let whole: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| err("number too large"))?
            };
            let mut nanos = whole.checked_mul(scale).ok_or_else(|| err("overflow"))?;
            if !frac_part.is_empty() {
                // Same rounding as Go: truncate the fraction after scaling. 25 digits
                // times the largest scale (an hour, under 10^13 ns) stays below u128::MAX;
                // further digits are far below a nanosecond (Go ignores them too).
                let digits = frac_part.len().min(25) as u32;
                let frac: u128 = frac_part[..digits as usize]
                    .parse()
                    .map_err(|_| err("number too large"))?;
                nanos = nanos
                    .checked_add(frac * scale / 10u128.pow(digits))
                    .ok_or_else(|| err("overflow"))?;
            }
            total_nanos = total_nanos
                .checked_add(nanos)
                .ok_or_else(|| err("overflow"))?;
            s = rest;
        }
        if total_nanos > i64::MAX as u128 {
            return Err(err("overflow"));
        }
        Ok(Self(Duration::from_nanos(total_nanos as u64)))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl std::str::FromStr for GoDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Prints like Go's `Duration.String()`: `8760h0m0s`, `2m0s`, `1.5s`, `300ms`, `0s`.
impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000_000_000 {
            let (scale, unit) = match nanos {
                n if n < 1_000 => (1, "ns"),
                n if n < 1_000_000 => (1_000, "µs"),
                _ => (1_000_000, "ms"),
            };
            return write!(f, "{}{unit}", fraction(nanos, scale));
        }
        let hours = nanos / 3_600_000_000_000;
        let minutes = (nanos / 60_000_000_000) % 60;
        let second_nanos = nanos % 60_000_000_000;
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if hours > 0 || minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        write!(f, "{}s", fraction(second_nanos, 1_000_000_000))
    }
}

fn fraction(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let rem = value % scale;
    if rem == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_syntax() {
        let cases = [
            ("90s", 90_000),
            ("2m0s", 120_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("300ms", 300),
            ("8760h0m0s", 8760 * 3_600_000),
            ("0", 0),
            ("+5s", 5_000),
            (".5s", 500),
            ("1m30.5s", 90_500),
        ];
        for (input, millis) in cases {
            assert_eq!(
                GoDuration::parse(input).unwrap().0,
                Duration::from_millis(millis),
                "{input}"
            );
        }
        assert_eq!(
            GoDuration::parse("2us").unwrap().0,
            Duration::from_micros(2)
        );
    }

    #[test]
    fn refuses_what_go_refuses_and_negatives() {
        for (input, reason) in [
            ("", "empty"),
            ("90", "missing unit"),
            ("5x", "unknown unit"),
            ("s", "expected a number"),
            ("-1s", "negative"),
            ("10 s", "unknown unit"),
        ] {
            let err = GoDuration::parse(input).unwrap_err();
            assert!(err.reason.contains(reason), "{input}: {err}");
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }

    /// Found by phases/tests/fuzz.rs: long fractions of minutes and hours overflowed
    /// (a panic in debug builds, a wrong duration in release builds).
    #[test]
    fn long_fractions_and_huge_numbers_do_not_overflow() {
        assert_eq!(
            GoDuration::parse(".10000000000000000000000000000m")
                .unwrap()
                .0,
            Duration::from_secs(6)
        );
        assert_eq!(
            GoDuration::parse("1.999999999999999999999999999999h")
                .unwrap()
                .0,
            Duration::from_nanos(7_199_999_999_999)
        );
        let max = u128::MAX.to_string();
        for input in [
            format!("{max}ns"),
            format!("{max}.9h"),
            format!("{}.9ns", u128::MAX),
        ] {
            assert_eq!(
                GoDuration::parse(&input).unwrap_err().reason,
                "overflow",
                "{input}"
            );
        }
    }

    #[test]
    fn prints_like_go() {
        let cases = [
            (Duration::from_secs(8760 * 3600), "8760h0m0s"),
            (Duration::from_secs(120), "2m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_micros(2), "2µs"),
            (Duration::ZERO, "0s"),
            (Duration::from_secs(3600), "1h0m0s"),
        ];
        for (d, s) in cases {
            assert_eq!(GoDuration(d).to_string(), s);
            assert_eq!(GoDuration::parse(s).unwrap().0, d, "round trip {s}");
        }
    }
}
