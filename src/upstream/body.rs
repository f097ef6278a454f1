//! Request bodies on their way to STDIN: streamed from the client when the
//! length is known, or spooled (memory, then an anonymous temp file) when it
//! is not, because php-fpm needs a true CONTENT_LENGTH.

use std::io::SeekFrom;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{BoxError, ClientError, UpstreamError};

/// Bodies up to this size stay in memory while spooling.
pub const SPOOL_MEMORY_LIMIT: usize = 1024 * 1024;
const FILE_CHUNK: usize = 64 * 1024;

/// The STDIN of one FastCGI request.
pub enum RequestBody {
    Empty,
    /// Streamed from the client as it arrives; its length was announced up front.
    Stream(BoxBody<Bytes, BoxError>),
    Spooled(Spool),
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBody::Empty => f.write_str("Empty"),
            RequestBody::Stream(_) => f.write_str("Stream"),
            RequestBody::Spooled(s) => write!(f, "Spooled({} bytes)", s.len),
        }
    }
}

impl RequestBody {
    pub fn is_empty(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Stream(b) => b.is_end_stream(),
            RequestBody::Spooled(s) => s.len == 0,
        }
    }

    /// Starts the body over for a retry; false when it cannot be replayed
    /// (a client stream already read is gone).
    pub fn rewind(&mut self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Stream(_) => false,
            RequestBody::Spooled(spool) => {
                spool.next_memory = 0;
                spool.file_rewound = false;
                true
            }
        }
    }

    /// The next piece of body, or None at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        match self {
            RequestBody::Empty => Ok(None),
            RequestBody::Stream(body) => loop {
                match body.frame().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(ClientError::Body(e).into()),
                    Some(Ok(frame)) => {
                        // Trailers have no place in CGI; skip them.
                        if let Ok(data) = frame.into_data() {
                            if !data.is_empty() {
                                return Ok(Some(data));
                            }
                        }
                    }
                }
            },
            RequestBody::Spooled(spool) => spool.next_chunk().await,
        }
    }
}

/// A body read to its end before it is sent: its length is known.
#[derive(Debug, Default)]
pub struct Spool {
    memory: Vec<Bytes>,
    /// Index of the next memory chunk to send.
    next_memory: usize,
    file: Option<tokio::fs::File>,
    len: u64,
    /// Where the file part is read from next (after rewinding).
    file_rewound: bool,
}

/// Why a body could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the request body failed: {0}")]
    Client(#[source] BoxError),
    #[error("spooling the request body to a temp file failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Spool {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads `body` to its end, keeping up to SPOOL_MEMORY_LIMIT bytes in
    /// memory and the rest in an anonymous temp file; refuses more than `limit`.
    pub async fn read_from<B>(mut body: B, limit: u64) -> Result<Spool, SpoolError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let mut spool = Spool::default();
        let mut in_memory = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| SpoolError::Client(e.into()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            spool.len += data.len() as u64;
            if spool.len > limit {
                return Err(SpoolError::TooLarge { limit });
            }
            if spool.file.is_none() && in_memory + data.len() <= SPOOL_MEMORY_LIMIT {
                in_memory += data.len();
                spool.memory.push(data);
                continue;
            }
            if spool.file.is_none() {
                let file = tokio::task::spawn_blocking(tempfile::tempfile)
                    .await
                    .map_err(std::io::Error::other)??;
                spool.file = Some(tokio::fs::File::from_std(file));
            }
            if let Some(file) = spool.file.as_mut() {
                file.write_all(&data).await?;
            }
        }
        if let Some(file) = spool.file.as_mut() {
            file.flush().await?;
        }
        Ok(spool)
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        if let Some(chunk) = self.memory.get(self.next_memory) {
            self.next_memory += 1;
            return Ok(Some(chunk.clone()));
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(None);
        };
        let io_err = |e: std::io::Error| UpstreamError::from(ClientError::Spool(e));
        if !self.file_rewound {
            file.seek(SeekFrom::Start(0)).await.map_err(io_err)?;
            self.file_rewound = true;
        }
        let mut buf = BytesMut::with_capacity(FILE_CHUNK);
        let n = file.read_buf(&mut buf).await.map_err(io_err)?;
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(buf.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    async fn drain(mut body: RequestBody) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(c) = body.next_chunk().await.unwrap() {
            all.extend_from_slice(&c);
        }
        all
    }

    #[tokio::test]
    async fn small_body_stays_in_memory() {
        let spool = Spool::read_from(Full::new(Bytes::from_static(b"hello")), 100)
            .await
            .unwrap();
        assert_eq!(spool.len(), 5);
        assert!(spool.file.is_none());
        assert_eq!(drain(RequestBody::Spooled(spool)).await, b"hello");
    }

    #[tokio::test]
    async fn big_body_goes_to_a_file_and_reads_back() {
        let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let spool = Spool::read_from(Full::new(Bytes::from(data.clone())), 10 << 20)
            .await
            .unwrap();
        assert!(spool.file.is_some());
        assert_eq!(spool.len(), data.len() as u64);
        let mut body = RequestBody::Spooled(spool);
        let mut first = Vec::new();
        for _ in 0..3 {
            first.extend_from_slice(&body.next_chunk().await.unwrap().unwrap());
        }
        // A retry replays it from the start.
        assert!(body.rewind());
        assert_eq!(drain(body).await, data);
    }

    #[tokio::test]
    async fn body_over_the_limit_is_refused() {
        let res = Spool::read_from(Full::new(Bytes::from(vec![0u8; 101])), 100).await;
        assert!(matches!(res, Err(SpoolError::TooLarge { limit: 100 })));
    }
}
