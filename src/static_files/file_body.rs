//! A response body read from an open file in chunks of at most 64 KiB, so
//! a large file costs one chunk of memory however big it is.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::fs::File;
use tokio::io::{AsyncRead, ReadBuf};

use crate::body::BodyError;

pub(super) const CHUNK_SIZE: usize = 64 * 1024;

/// `remaining` bytes from the file's current position.
pub(super) struct FileBody {
    file: File,
    remaining: u64,
    buf: BytesMut,
}

impl FileBody {
    pub(super) fn new(file: File, len: u64) -> Self {
        FileBody {
            file,
            remaining: len,
            buf: BytesMut::new(),
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining).map_or(CHUNK_SIZE, |r| r.min(CHUNK_SIZE));
        this.buf.resize(want, 0);
        let mut read_buf = ReadBuf::new(&mut this.buf[..want]);
        if let Err(e) = ready!(Pin::new(&mut this.file).poll_read(cx, &mut read_buf)) {
            return Poll::Ready(Some(Err(Box::new(e))));
        }
        let n = read_buf.filled().len();
        if n == 0 {
            // The file shrank after Content-Length went out: abort rather than
            // send a short body the client would take as complete.
            let e = io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent");
            return Poll::Ready(Some(Err(Box::new(e))));
        }
        this.remaining -= n as u64;
        let chunk = this.buf.split_to(n).freeze();
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncSeekExt;

    #[tokio::test]
    async fn streams_in_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();

        let mut file = File::open(&path).await.unwrap();
        file.seek(io::SeekFrom::Start(3)).await.unwrap();
        let mut body = FileBody::new(file, 900_000);
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            assert!(
                !chunk.is_empty() && chunk.len() <= CHUNK_SIZE,
                "{}",
                chunk.len()
            );
            got.extend_from_slice(&chunk);
            frames += 1;
        }
        assert!(body.is_end_stream());
        assert_eq!(got, data[3..900_003]);
        assert!(frames >= 900_000 / CHUNK_SIZE, "{frames}");
    }

    #[tokio::test]
    async fn a_file_that_shrank_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.bin");
        std::fs::write(&path, b"12345").unwrap();
        let mut body = FileBody::new(File::open(&path).await.unwrap(), 10);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"12345");
        assert!(body.frame().await.unwrap().is_err());
    }
}
