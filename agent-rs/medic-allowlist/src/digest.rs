//! SHA-256 digests as the allowlist writes them: 64 hexadecimal digits.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::Digest;

/// A SHA-256 digest. Parsed from 64 hexadecimal digits (either case), shown in lower case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256([u8; 32]);

/// The text is not 64 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a SHA-256 is 64 hexadecimal digits")]
pub struct InvalidSha256;

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }

    /// The digest of everything `reader` yields, read in 64 KiB blocks.
    pub fn of_reader(reader: impl Read) -> io::Result<Self> {
        Self::of_reader_with(reader, |_| Ok(()))
    }

    /// The digest of everything `reader` yields, handing each block to `each` as it is hashed
    /// (to copy it somewhere, or to stop early by returning an error).
    pub(crate) fn of_reader_with(
        mut reader: impl Read,
        mut each: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<Self> {
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buffer[..n]);
                    each(&buffer[..n])?;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(Self(hasher.finalize().into()))
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for Sha256 {
    type Err = InvalidSha256;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return Err(InvalidSha256);
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Ok(Self(bytes))
    }
}

fn hex_value(digit: u8) -> Result<u8, InvalidSha256> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(InvalidSha256),
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(Sha256::of(b"").to_string(), EMPTY);
        assert_eq!(Sha256::of_reader(&b""[..]).unwrap().to_string(), EMPTY);
    }

    #[test]
    fn reader_and_slice_digests_agree_across_block_boundaries() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(Sha256::of(&data), Sha256::of_reader(&data[..]).unwrap());
    }

    #[test]
    fn parses_either_case_and_prints_lower_case() {
        let upper = EMPTY.to_uppercase();
        assert_eq!(upper.parse::<Sha256>().unwrap().to_string(), EMPTY);
    }

    #[test]
    fn refuses_wrong_length_and_non_hex_digits() {
        assert_eq!("abc".parse::<Sha256>(), Err(InvalidSha256));
        assert_eq!(EMPTY[..63].parse::<Sha256>(), Err(InvalidSha256));
        let bad = format!("{}g", &EMPTY[..63]);
        assert_eq!(bad.parse::<Sha256>(), Err(InvalidSha256));
        let sign = format!("+{}", &EMPTY[1..]);
        assert_eq!(sign.parse::<Sha256>(), Err(InvalidSha256));
    }
}
