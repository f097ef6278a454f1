//! TLS for the `https` listeners: the certificate and key read from PEM
//! files into a rustls config that can be swapped while serving (SIGHUP),
//! and the per-connection handshake with its timeout.
//!
//! The config sits behind a lock that is read once per new TLS connection,
//! so a reload changes what new connections get and leaves the open ones be.
//! With several sites, each site's certificate is chosen by the name the
//! client asks for (SNI), as nginx's `server_name`; others get the default.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CipherSuite, ProtocolVersion, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::cgi::params::TlsInfo;
use crate::config::{TlsFiles, TlsSet};
use crate::sites::{self, ServerName};

/// Why a certificate or key could not be used; names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls-cert {}: {reason}", path.display())]
    Cert { path: PathBuf, reason: String },
    #[error("tls-key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    /// rustls refused the pair (e.g. the key is not the certificate's).
    #[error("tls-cert {} with tls-key {}: {reason}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The served certificate, reloadable from its files.
#[derive(Debug)]
pub struct ReloadableTls {
    set: TlsSet,
    current: RwLock<Arc<ServerConfig>>,
}

impl ReloadableTls {
    /// Reads the certificate chains and keys; fails naming the file at fault.
    pub fn load(set: &TlsSet) -> Result<ReloadableTls, TlsError> {
        Ok(ReloadableTls {
            current: RwLock::new(Arc::new(server_config(set)?)),
            set: set.clone(),
        })
    }

    /// Re-reads the files. On success new connections get the new
    /// certificate; on failure the old one keeps serving.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(server_config(&self.set)?);
        // A poisoned lock only means a panic elsewhere while swapping an Arc;
        // the Arc inside is whole either way.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The config new connections are served with.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The default certificate's files.
    pub fn files(&self) -> &TlsFiles {
        self.set.default_files()
    }

    /// Runs the server side of the handshake, within `timeout` so a client
    /// that says nothing cannot hold a connection permit. Failures are the
    /// client's business (scanners, wrong protocol): logged at debug.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Option<(TlsStream<TcpStream>, TlsInfo)> {
        let acceptor = TlsAcceptor::from(self.server_config());
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => {
                let info = info_of(stream.get_ref().1);
                Some((stream, info))
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(timeout = ?timeout, "TLS handshake timed out (header-timeout)");
                None
            }
        }
    }
}

fn server_config(set: &TlsSet) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let mut certs = Vec::with_capacity(set.entries.len());
    for (names, files) in &set.entries {
        let chain = read_chain(&files.cert)?;
        let key = read_key(&files.key)?;
        let pair = |reason: String| TlsError::Pair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason,
        };
        let certified = rustls::sign::CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| pair(e.to_string()))?;
        certs.push((names.clone(), Arc::new(certified)));
    }
    let default = set.default.min(certs.len().saturating_sub(1));
    let resolver = BySni { certs, default };
    let files = set.default_files();
    // The provider is named rather than taken from a process default, which
    // rustls would have to guess (and panic on) if several were compiled in.
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    // h2 first: clients that can do both get HTTP/2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Chooses the certificate of the site the client names (SNI); the default
/// one when it names none or no site's.
#[derive(Debug)]
struct BySni {
    certs: Vec<(Vec<ServerName>, Arc<rustls::sign::CertifiedKey>)>,
    default: usize,
}

impl rustls::server::ResolvesServerCert for BySni {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let chosen = if self.certs.len() == 1 {
            None
        } else {
            sites::choose(
                self.certs.iter().map(|(names, _)| names.as_slice()),
                hello.server_name(),
            )
        };
        self.certs
            .get(chosen.unwrap_or(self.default))
            .map(|(_, key)| key.clone())
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Cert {
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(pem_reason(e)))?;
    if chain.is_empty() {
        return Err(bad("no CERTIFICATE in the file".to_owned()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.to_owned(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY (PKCS#8, RSA or EC) in the file".to_owned()
            }
            e => pem_reason(e),
        },
    })
}

fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    match e {
        // The io error alone, so "No such file or directory" reads plainly.
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        e => format!("not valid PEM: {e}"),
    }
}

/// What PHP is told about the connection, in the names Apache's mod_ssl and
/// nginx use (OpenSSL's), as static strings: nothing is allocated per request.
fn info_of(conn: &rustls::ServerConnection) -> TlsInfo {
    let protocol = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        Some(other) => other.as_str().unwrap_or(""),
        None => "",
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map_or("", |s| openssl_name(s.suite()));
    TlsInfo { protocol, cipher }
}

fn openssl_name(suite: CipherSuite) -> &'static str {
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        // Any other suite rustls may add: its IANA name.
        other => other.as_str().unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("key.pem"),
        };
        let one = |files: TlsFiles| TlsSet {
            entries: vec![(Vec::new(), files)],
            default: 0,
        };
        let text = ReloadableTls::load(&one(missing)).unwrap_err().to_string();
        assert!(
            text.starts_with("tls-cert ") && text.contains("nope.pem"),
            "{text}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello\n").unwrap();
        let text = ReloadableTls::load(&one(TlsFiles {
            cert: empty.clone(),
            key: empty,
        }))
        .unwrap_err()
        .to_string();
        assert!(text.contains("no CERTIFICATE"), "{text}");
    }
}
