//! [`ChecksumReader`]: streams a snapshot's data file and checks its size
//! and CRC32C when the end is reached.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Reads the data, hashing as it goes; at end of file returns an error of
/// kind [`io::ErrorKind::InvalidData`] if the size or checksum differs
/// from the metadata.
pub(crate) struct ChecksumReader<R> {
    inner: R,
    path: String,
    crc: u32,
    read: u64,
    expected_size: u64,
    expected_crc: u32,
}

impl<R> ChecksumReader<R> {
    /// Wraps `inner`, which must yield `expected_size` bytes hashing to `expected_crc`.
    pub fn new(inner: R, path: String, expected_size: u64, expected_crc: u32) -> Self {
        Self { inner, path, crc: 0, read: 0, expected_size, expected_crc }
    }

    fn invalid(&self, what: String) -> io::Error {
        tracing::error!(path = %self.path, %what, "snapshot data is corrupt");
        io::Error::new(io::ErrorKind::InvalidData, format!("corrupt snapshot {}: {what}", self.path))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ChecksumReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let new = &buf.filled()[before..];
        if new.is_empty() && buf.remaining() > 0 {
            // End of file: the whole snapshot has been seen.
            if this.read != this.expected_size {
                let what = format!("{} bytes read, metadata says {}", this.read, this.expected_size);
                return Poll::Ready(Err(this.invalid(what)));
            }
            if this.crc != this.expected_crc {
                let what = format!("checksum {:#010x}, metadata says {:#010x}", this.crc, this.expected_crc);
                return Poll::Ready(Err(this.invalid(what)));
            }
            return Poll::Ready(Ok(()));
        }
        this.crc = crc32c::crc32c_append(this.crc, new);
        this.read += new.len() as u64;
        if this.read > this.expected_size {
            let what = format!("more than the {} bytes the metadata says", this.expected_size);
            return Poll::Ready(Err(this.invalid(what)));
        }
        Poll::Ready(Ok(()))
    }
}
