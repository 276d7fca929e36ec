//! TLS for the HTTPS listeners: rustls with the ring provider, ALPN `h2`
//! and `http/1.1`, and a certificate that SIGHUP replaces without touching
//! open connections (the resolver reads it per handshake).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate in use, swapped on reload.
struct Current(ArcSwap<CertifiedKey>);

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("current certificate")
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

pub struct Tls {
    current: Arc<Current>,
    pub config: Arc<ServerConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and private key, and checks they match.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificate {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading private key {}", key.display()))?;
    CertifiedKey::from_der(chain, der, &provider()).with_context(|| {
        format!(
            "{} and {} do not form a usable pair",
            cert.display(),
            key.display()
        )
    })
}

impl Tls {
    pub fn new(cert: &Path, key: &Path) -> Result<Tls> {
        let current = Arc::new(Current(ArcSwap::from_pointee(load(cert, key)?)));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            current,
            config: Arc::new(config),
        })
    }

    /// Loads the certificate again; on error the old one stays in use.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<()> {
        self.current.0.store(Arc::new(load(cert, key)?));
        Ok(())
    }
}
