//! A response body compressed as it streams. Whatever the application has
//! sent is compressed at once; when it pauses (the next chunk is not ready)
//! the encoder is flushed, so a PHP `flush()` still reaches the client.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::write::GzEncoder;
use http_body::{Body, Frame};

use crate::body::BodyError;
use crate::static_files::Encoding;

/// gzip level and brotli quality: fast settings, as the output is made per
/// request while the client waits (nginx's gzip default is 1, brotli's 6).
const GZIP_LEVEL: u32 = 5;
const BROTLI_QUALITY: u32 = 4;
/// A 256 KiB window: plenty for page-sized responses, bounded memory per stream.
const BROTLI_WINDOW_BITS: u32 = 18;
const BROTLI_BUFFER: usize = 4096;
/// Compressed bytes handed on without waiting for a pause.
const OUTPUT_CHUNK: usize = 64 * 1024;

enum Encoder {
    Gzip(GzEncoder<Vec<u8>>),
    // Boxed: the brotli state is large and would bloat every body value.
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    fn new(encoding: Encoding) -> Encoder {
        match encoding {
            Encoding::Gzip => Encoder::Gzip(GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                BROTLI_QUALITY,
                BROTLI_WINDOW_BITS,
            ))),
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Brotli(e) => e.write_all(data),
        }
    }

    /// Emits everything written so far as complete, decodable output.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Brotli(e) => e.flush(),
        }
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Brotli(e) => e.get_mut(),
        }
    }

    /// The compressed bytes produced so far.
    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(self.output()))
    }

    /// Ends the stream (trailer, checksum) and returns the last bytes.
    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            // into_inner finishes the brotli stream before handing the buffer back.
            Encoder::Brotli(e) => Ok(e.into_inner()),
        }
    }
}

/// `inner`'s data, compressed with one encoding.
pub(crate) struct CompressedBody<B> {
    inner: B,
    /// `None` once the stream is finished.
    encoder: Option<Encoder>,
    /// Data was written since the last flush.
    unflushed: bool,
}

impl<B> CompressedBody<B> {
    pub fn new(inner: B, encoding: Encoding) -> Self {
        CompressedBody {
            inner,
            encoder: Some(Encoder::new(encoding)),
            unflushed: false,
        }
    }
}

fn data(bytes: impl Into<Bytes>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
    Poll::Ready(Some(Ok(Frame::data(bytes.into()))))
}

fn failed(e: io::Error) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
    tracing::warn!(error = %e, "compressing the response failed; aborting it");
    Poll::Ready(Some(Err(Box::new(e))))
}

impl<B> Body for CompressedBody<B>
where
    B: Body<Data = Bytes, Error = BodyError> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not ours to compress; PHP sends none.
                    let Ok(chunk) = frame.into_data() else {
                        continue;
                    };
                    if let Err(e) = encoder.write(&chunk) {
                        return failed(e);
                    }
                    this.unflushed = true;
                    if encoder.output().len() >= OUTPUT_CHUNK {
                        return data(encoder.take());
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    let Some(encoder) = this.encoder.take() else {
                        return Poll::Ready(None);
                    };
                    return match encoder.finish() {
                        Ok(last) if last.is_empty() => Poll::Ready(None),
                        Ok(last) => data(last),
                        Err(e) => failed(e),
                    };
                }
                Poll::Pending => {
                    // The application paused: send what it has said so far.
                    if this.unflushed {
                        this.unflushed = false;
                        if let Err(e) = encoder.flush() {
                            return failed(e);
                        }
                        let out = encoder.take();
                        if !out.is_empty() {
                            return data(out);
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    /// A body fed by hand through a channel, so a test controls the pauses.
    struct Fed(mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = BodyError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }

    fn decode(enc: Encoding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match enc {
            Encoding::Gzip => flate2::read::GzDecoder::new(data).read_to_end(&mut out),
            Encoding::Brotli => brotli::Decompressor::new(data, 4096).read_to_end(&mut out),
        }
        .unwrap();
        out
    }

    /// What a decoder can make of a stream's first bytes alone.
    fn decode_prefix(enc: Encoding, data: &[u8]) -> Vec<u8> {
        match enc {
            Encoding::Gzip => {
                let mut d = flate2::write::GzDecoder::new(Vec::new());
                d.write_all(data).unwrap();
                d.flush().unwrap();
                d.get_ref().clone()
            }
            Encoding::Brotli => {
                let mut d = brotli::DecompressorWriter::new(Vec::new(), 4096);
                d.write_all(data).unwrap();
                let _ = d.flush();
                d.get_ref().clone()
            }
        }
    }

    #[tokio::test]
    async fn whole_bodies_round_trip() {
        let text: Vec<u8> = b"hello compressed world, ".repeat(10_000);
        for enc in Encoding::ALL {
            let (tx, rx) = mpsc::channel(64);
            for chunk in text.chunks(7000) {
                tx.send(Bytes::copy_from_slice(chunk)).await.unwrap();
            }
            drop(tx);
            let out = CompressedBody::new(Fed(rx), enc)
                .collect()
                .await
                .unwrap()
                .to_bytes();
            assert!(out.len() < text.len() / 10, "{enc:?}: {}", out.len());
            assert_eq!(decode(enc, &out), text, "{enc:?}");
        }
    }

    #[tokio::test]
    async fn a_pause_flushes_what_came_before() {
        for enc in Encoding::ALL {
            let (tx, rx) = mpsc::channel(4);
            let mut body = CompressedBody::new(Fed(rx), enc);
            tx.send(Bytes::from_static(b"event one\n")).await.unwrap();
            // Nothing more is ready: the first frame must decode on its own.
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(decode_prefix(enc, &first), b"event one\n", "{enc:?}");
            tx.send(Bytes::from_static(b"event two\n")).await.unwrap();
            drop(tx);
            let rest = body.collect().await.unwrap().to_bytes();
            let mut all = first.to_vec();
            all.extend_from_slice(&rest);
            assert_eq!(decode(enc, &all), b"event one\nevent two\n", "{enc:?}");
        }
    }
}
