//! The control plane's home directory: its CA and serving certificate, its admin token, its
//! database and the kubeconfig clients use.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::json;

/// Failures preparing the home directory.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// A file could not be read or written.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A certificate could not be made or read.
    #[error("certificate error: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The kubeconfig could not be written as YAML.
    #[error("failed to render the kubeconfig: {0}")]
    Yaml(String),
    /// No randomness.
    #[error("no random source: {0}")]
    Random(String),
}

/// The files of a home directory.
#[derive(Clone, Debug)]
pub struct Home {
    /// The directory.
    pub dir: PathBuf,
}

/// Credentials and certificates ready for serving.
#[derive(Debug)]
pub struct Material {
    /// The admin bearer token.
    pub token: String,
    /// CA certificate, PEM.
    pub ca_pem: String,
    /// Serving certificate, PEM.
    pub serving_cert_pem: String,
    /// Serving key, PEM.
    pub serving_key_pem: String,
}

fn read(path: &Path) -> Result<Option<String>, HomeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HomeError::Io { action: "read", path: path.to_owned(), source }),
    }
}

/// Writes a file readable by its owner only, atomically (write then rename).
fn write_private(path: &Path, contents: &str) -> Result<(), HomeError> {
    let temporary = path.with_extension("tmp");
    let io = |action, source| HomeError::Io { action, path: path.to_owned(), source };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|e| io("create", e))?;
    file.write_all(contents.as_bytes()).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&temporary, path).map_err(|e| io("rename", e))
}

impl Home {
    /// A home at `dir`, created if needed, readable by its owner only (0700; its files are
    /// 0600): it holds every Secret (agent tokens, BMC credentials), the admin token and the
    /// CA key. An existing home and database are tightened to that.
    pub fn create(dir: &Path) -> Result<Self, HomeError> {
        let io = |action, source| HomeError::Io { action, path: dir.to_owned(), source };
        std::fs::create_dir_all(dir).map_err(|e| io("create", e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| io("chmod", e))?;
        let home = Self { dir: dir.to_owned() };
        let database = home.database();
        let path_io = |action, source| HomeError::Io { action, path: database.clone(), source };
        // Made before SQLite opens it, which would make it 0644 (and its WAL files alike).
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&database)
            .map_err(|e| path_io("create", e))?;
        for suffix in ["", "-wal", "-shm"] {
            let path = PathBuf::from(format!("{}{suffix}", database.display()));
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(HomeError::Io { action: "chmod", path, source: e }),
            }
        }
        Ok(home)
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.dir.join("state.db")
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// Loads the CA and token, generating them the first time, and issues a serving
    /// certificate for `listen` (and localhost) signed by the CA.
    pub fn material(&self, listen: SocketAddr) -> Result<Material, HomeError> {
        let token_path = self.dir.join("token");
        let token = match read(&token_path)? {
            Some(token) if !token.trim().is_empty() => token.trim().to_owned(),
            _ => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(|e| HomeError::Random(e.to_string()))?;
                let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                write_private(&token_path, &token)?;
                token
            }
        };
        let (ca_cert_path, ca_key_path) = (self.dir.join("ca.crt"), self.dir.join("ca.key"));
        let (ca_pem, ca_key) = match (read(&ca_cert_path)?, read(&ca_key_path)?) {
            (Some(cert), Some(key)) => (cert, KeyPair::from_pem(&key)?),
            _ => {
                let mut params = CertificateParams::new(Vec::<String>::new())?;
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.distinguished_name.push(DnType::CommonName, "machinist control plane CA");
                params.key_usages =
                    vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
                params.not_after = rcgen::date_time_ymd(2125, 1, 1);
                let key = KeyPair::generate()?;
                let cert = params.self_signed(&key)?;
                write_private(&ca_key_path, &key.serialize_pem())?;
                write_private(&ca_cert_path, &cert.pem())?;
                (cert.pem(), key)
            }
        };
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        let ip = listen.ip().to_string();
        if !names.contains(&ip) && !listen.ip().is_unspecified() {
            names.push(ip);
        }
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, "machinist-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Material { token, ca_pem, serving_cert_pem: cert.pem(), serving_key_pem: key.serialize_pem() })
    }

    /// Writes the kubeconfig that points kubectl and kube-rs at `address` as the admin.
    pub fn write_kubeconfig(&self, address: SocketAddr, material: &Material) -> Result<PathBuf, HomeError> {
        let path = self.kubeconfig();
        self.write_kubeconfig_as(&path, address, &material.ca_pem, "machinist-admin", &material.token)?;
        Ok(path)
    }

    /// Writes a kubeconfig at `path` (private, like everything in the home) that points at
    /// `address` as `user` with `token`.
    pub fn write_kubeconfig_as(
        &self,
        path: &Path,
        address: SocketAddr,
        ca_pem: &str,
        user: &str,
        token: &str,
    ) -> Result<(), HomeError> {
        let host = if address.ip().is_unspecified() { "127.0.0.1".to_owned() } else { address.ip().to_string() };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "machinist", "cluster": {
                "server": format!("https://{host}:{}", address.port()),
                "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca_pem),
            }}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "machinist", "context": {"cluster": "machinist", "user": user, "namespace": "default"}}],
            "current-context": "machinist",
            "preferences": {},
        });
        let yaml = serde_saphyr::to_string(&config).map_err(|e| HomeError::Yaml(e.to_string()))?;
        write_private(path, &yaml)
    }
}
