//! The HTTP/1.1 client of `doctor`: hyper's connection-level client over a
//! tokio TCP stream (TLS by tokio-rustls for https), one fresh connection
//! per request with `Connection: close`, so a probe that hangs or is cut
//! short leaves nothing behind. It talks to one origin only, counts every
//! request against [`MAX_REQUESTS`], bounds each by a timeout and reads at
//! most [`MAX_BODY`] bytes of a body.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::target::{Scheme, Target};

/// Requests one run may send, all checks together. The check table is
/// built to stay under it (a unit test adds up its bounds); past it a
/// request is refused and its check comes out "cannot tell".
pub const MAX_REQUESTS: usize = 60;
/// What is kept of a body; judging needs the start of a page, not all of it.
pub const MAX_BODY: usize = 256 * 1024;

const USER_AGENT: &str = concat!("fcgi-gateway-doctor/", env!("CARGO_PKG_VERSION"));

/// The CA bundles Debian/Ubuntu, Fedora/RHEL and Alpine/macOS-style
/// systems keep, in that order; `SSL_CERT_FILE` wins when set.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// How an https server's certificate is checked.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The system's CA bundle.
    System,
    /// The CAs of one PEM file (a private CA).
    CaFile(std::path::PathBuf),
    /// Any certificate (`--insecure`): the handshake's signatures are
    /// still verified, the chain and the name are not.
    Insecure,
}

/// One whole answer (its body cut at [`MAX_BODY`]).
#[derive(Debug, Clone)]
pub struct Answer {
    pub method: Method,
    /// The request target as sent (origin form).
    pub target: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type, lowercased, without parameters ("" when absent).
    pub fn media_type(&self) -> String {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }

    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// What is kept of every answer, for the checks that look across them all.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub target: String,
    pub status: u16,
    pub server: Option<String>,
    pub powered_by: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("not sent: the run's {MAX_REQUESTS} requests are used up")]
    OverBudget,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
}

pub struct Client {
    target: Target,
    addrs: Vec<SocketAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
    sent: usize,
    seen: Vec<Seen>,
}

impl Client {
    /// Resolves the host (once: every request goes to these addresses) and
    /// prepares TLS for https. Sends nothing.
    pub async fn new(target: Target, trust: &Trust, timeout: Duration) -> Result<Client, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{} resolves to no address", target.host));
        }
        let tls = match target.scheme {
            Scheme::Http => None,
            Scheme::Https => {
                let name = ServerName::try_from(target.host.clone())
                    .map_err(|e| format!("{:?} cannot be a TLS server name: {e}", target.host))?;
                let connector = TlsConnector::from(Arc::new(tls_config(trust)?));
                Some((connector, name))
            }
        };
        Ok(Client {
            target,
            addrs,
            tls,
            timeout,
            sent: 0,
            seen: Vec::new(),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Requests sent so far (counting those that failed).
    pub fn sent(&self) -> usize {
        self.sent
    }

    pub fn seen(&self) -> &[Seen] {
        &self.seen
    }

    pub async fn get(
        &mut self,
        target: &str,
        headers: &[(&'static str, String)],
    ) -> Result<Answer, ProbeError> {
        self.request(Method::GET, target, headers).await
    }

    /// One request to the origin; `target` is origin-form and sent as is.
    pub async fn request(
        &mut self,
        method: Method,
        target: &str,
        headers: &[(&'static str, String)],
    ) -> Result<Answer, ProbeError> {
        if self.sent >= MAX_REQUESTS {
            return Err(ProbeError::OverBudget);
        }
        self.sent += 1;
        let request = self.build(&method, target, headers)?;
        let exchange = self.exchange(request);
        let result = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout(self.timeout)),
        };
        match &result {
            Ok((status, headers, body, truncated)) => {
                tracing::debug!(%method, target, status, bytes = body.len(), truncated, "probe");
                self.seen.push(Seen {
                    method: method.clone(),
                    target: target.to_owned(),
                    status: *status,
                    server: header_text(headers, "server"),
                    powered_by: header_text(headers, "x-powered-by"),
                });
            }
            Err(e) => tracing::debug!(%method, target, error = %e, "probe failed"),
        }
        result.map(|(status, headers, body, _)| Answer {
            method,
            target: target.to_owned(),
            status,
            headers,
            body,
        })
    }

    fn build(
        &self,
        method: &Method,
        target: &str,
        headers: &[(&'static str, String)],
    ) -> Result<Request<Empty<Bytes>>, ProbeError> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(target)
            .header(http::header::HOST, self.target.authority.as_str())
            .header(http::header::USER_AGENT, USER_AGENT)
            .header(http::header::ACCEPT, "*/*")
            .header(http::header::CONNECTION, "close");
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|e| ProbeError::Failed(format!("header {name}: {e}")))?;
            req = req.header(HeaderName::from_static(name), value);
        }
        req.body(Empty::new())
            .map_err(|e| ProbeError::Failed(format!("request for {target:?}: {e}")))
    }

    async fn exchange(
        &self,
        request: Request<Empty<Bytes>>,
    ) -> Result<(u16, HeaderMap, Bytes, bool), ProbeError> {
        let tcp = self.connect().await?;
        match &self.tls {
            None => send(tcp, request).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| ProbeError::Failed(format!("TLS handshake: {e}")))?;
                send(tls, request).await
            }
        }
    }

    /// The first of the resolved addresses that accepts.
    async fn connect(&self) -> Result<TcpStream, ProbeError> {
        let mut last = None;
        for addr in &self.addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    // Requests are one write each; no reason to wait for more.
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some(format!("connect to {addr}: {e}")),
            }
        }
        Err(ProbeError::Failed(
            last.unwrap_or_else(|| "no address to connect to".into()),
        ))
    }
}

/// Sends one request on a fresh HTTP/1.1 connection and reads the answer.
async fn send<S>(
    io: S,
    request: Request<Empty<Bytes>>,
) -> Result<(u16, HeaderMap, Bytes, bool), ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = |what: &str, e: hyper::Error| ProbeError::Failed(format!("{what}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| failed("HTTP handshake", e))?;
    // The connection is driven by its own task, aborted below so that a
    // body left unread never keeps the socket open.
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| failed("request", e))?;
        let (parts, mut body) = response.into_parts();
        let mut buf = BytesMut::new();
        let mut truncated = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| failed("reading the body", e))?;
            if let Ok(data) = frame.into_data() {
                let room = MAX_BODY - buf.len();
                if data.len() > room {
                    buf.extend_from_slice(&data[..room]);
                    truncated = true;
                    break;
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok((
            parts.status.as_u16(),
            parts.headers,
            buf.freeze(),
            truncated,
        ))
    }
    .await;
    driver.abort();
    result
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn tls_config(trust: &Trust) -> Result<ClientConfig, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        Trust::CaFile(path) => builder
            .with_root_certificates(roots_from(path)?)
            .with_no_client_auth(),
        Trust::System => {
            let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
            let path = from_env
                .or_else(|| {
                    SYSTEM_BUNDLES
                        .iter()
                        .map(std::path::PathBuf::from)
                        .find(|p| p.is_file())
                })
                .ok_or_else(|| {
                    format!(
                        "no CA bundle found (SSL_CERT_FILE unset, none of {}); \
                         give --ca-file FILE or --insecure",
                        SYSTEM_BUNDLES.join(", ")
                    )
                })?;
            builder
                .with_root_certificates(roots_from(&path)?)
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn roots_from(path: &Path) -> Result<RootCertStore, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("CA file {}: {e}", path.display()))?
        .filter_map(Result::ok);
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("CA file {}: no usable certificate", path.display()));
    }
    Ok(roots)
}

/// `--insecure`: every chain and name is accepted; the handshake's
/// signatures are still checked with the provider's algorithms, so the
/// server must at least hold the key of the certificate it shows.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
