//! `wsgi.input`: the request body as a blocking reader.

use std::io::{self, Read};

/// The request body, streamed from the connection as the application reads it.
///
/// Reading sends `100 Continue` first when the client asked for it; the end of the body reads
/// as end of file. A body the application leaves unread is discarded by the server. It is
/// `Send`, so that an embedded interpreter can read it with its lock released.
pub struct Input<'a> {
    /// The server's body decoder (or any reader, for testing an application).
    inner: &'a mut (dyn Read + Send + 'a),
}

impl<'a> Input<'a> {
    /// Wraps a reader, e.g. `&mut &b"body"[..]` to call an application in a unit test.
    pub fn new(inner: &'a mut (dyn Read + Send + 'a)) -> Self {
        Input { inner }
    }

    /// Reads the whole body, failing with `InvalidData` if it is longer than `limit` bytes.
    pub fn read_to_vec(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let read = self.take(limit as u64 + 1).read_to_end(&mut out)?;
        if read > limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        Ok(out)
    }
}

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_to_vec_respects_limit() {
        let mut body: &[u8] = b"hello";
        assert_eq!(Input::new(&mut body).read_to_vec(5).unwrap(), b"hello");
        let mut body: &[u8] = b"hello!";
        let err = Input::new(&mut body).read_to_vec(5).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
