//! The tests' one random source: xorshift64*, reproducible from the seed a test prints,
//! which is all a fault schedule or a kill moment needs. Standard library only, so the
//! root package's tests can include it with `#[path]`.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Rng(u64);

#[allow(dead_code)] // each including test binary uses its own subset
impl Rng {
    pub fn new(seed: u64) -> Self {
        // xorshift's state must not be zero.
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `lo..hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_micros() as u64;
        lo + Duration::from_micros(self.below(span))
    }

    /// Log-uniform in `min..max`: as many picks in the first few milliseconds (process
    /// start, TLS, the first calls) as in the tens after them.
    pub fn delay(&mut self, min: Duration, max: Duration) -> Duration {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let (min, max) = (min.as_secs_f64(), max.as_secs_f64());
        Duration::from_secs_f64(min * (max / min).powf(u))
    }
}
