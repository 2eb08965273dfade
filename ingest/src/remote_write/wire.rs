//! A minimal protobuf wire-format reader, for the one message on the hot
//! path (`prometheus.TimeSeries`): it hands out the raw bytes of each label
//! so a known series is recognised by a hash of those bytes, without
//! allocating a string per label. Everything else goes through prost.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct WireError(pub &'static str);

/// Decoders report errors as text; the wire error is one of them.
impl From<WireError> for String {
    fn from(err: WireError) -> Self {
        err.0.to_string()
    }
}

/// Protobuf wire types.
pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

/// Reads fields from a message's bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError("truncated or overlong varint"))
    }

    /// The next field's number and wire type.
    pub fn key(&mut self) -> Result<(u64, u8), WireError> {
        let key = self.varint()?;
        Ok((key >> 3, (key & 7) as u8))
    }

    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<8>()
            .ok_or(WireError("truncated fixed64"))?;
        self.buf = rest;
        Ok(u64::from_le_bytes(*head))
    }

    /// A length-delimited field's bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = usize::try_from(self.varint()?).map_err(|_| WireError("length overflow"))?;
        if len > self.buf.len() {
            return Err(WireError("length-delimited field runs past the end"));
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    /// Skips a field of the given wire type.
    pub fn skip(&mut self, wire_type: u8) -> Result<(), WireError> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => {
                if self.buf.len() < 4 {
                    return Err(WireError("truncated fixed32"));
                }
                self.buf = &self.buf[4..];
                Ok(())
            }
            _ => Err(WireError("unsupported wire type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_prost_writes() {
        use comet_schema::prompb::v1;
        use prost::Message;
        let sample = v1::Sample {
            value: -2.5,
            timestamp: 1_700_000_000_123,
        };
        let bytes = sample.encode_to_vec();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.key().unwrap(), (1, FIXED64));
        assert_eq!(f64::from_bits(r.fixed64().unwrap()), -2.5);
        assert_eq!(r.key().unwrap(), (2, VARINT));
        assert_eq!(r.varint().unwrap() as i64, 1_700_000_000_123);
        assert!(r.is_empty());
    }

    #[test]
    fn truncation_is_an_error() {
        assert!(Reader::new(&[0x80]).varint().is_err());
        assert!(Reader::new(&[0x05, 1, 2]).bytes().is_err());
        assert!(Reader::new(&[1, 2, 3]).fixed64().is_err());
        assert!(Reader::new(&[]).skip(7).is_err());
    }
}
