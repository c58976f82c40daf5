//! Bad serving certificates, made with the `openssl` command, and a real TLS
//! listener on 127.0.0.1 that serves one (`openssl s_server`): for the tests
//! of how clients explain a refused certificate.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::apiserver::free_port;

/// What is wrong with the certificate the server presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadCertificate {
    /// A self-signed CA certificate (`openssl req -x509` as is) served as the
    /// server's own, and given to the client as its CA.
    CaUsedAsLeaf,
    /// Signed by a CA the client is not given.
    UnknownCa,
    /// Signed by another CA with the same name as the one the client is given.
    BadSignature,
    /// Names `DNS:berth.example.com` only; the server listens on 127.0.0.1.
    WrongName,
    /// Valid from 2020-01-01 to 2020-01-02.
    Expired,
    /// Valid from 2090-01-01.
    NotYetValid,
    /// Signed by a certificate that is not a CA (basic constraints CA:FALSE),
    /// which the server sends along.
    SignedByLeaf,
}

impl BadCertificate {
    /// Writes into `dir` `ca.crt` (the CA a client is given), `tls.key`, and
    /// `tls.crt`: the server's certificate, then any certificate that signed it.
    ///
    /// # Panics
    /// When `openssl` fails.
    pub fn write(self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("certificate dir");
        let ca = Issuer::new(dir, "ca", "berth-test-ca");
        let leaf = |issuer: &Issuer, extensions: &str| issuer.sign(dir, "tls", extensions, None);
        let serving = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE";
        let chain = match self {
            Self::CaUsedAsLeaf => {
                Issuer::self_signed(dir, "tls", "berth-test", &["-addext", "subjectAltName=IP:127.0.0.1"]);
                std::fs::copy(dir.join("tls.crt"), dir.join("ca.crt")).expect("ca.crt");
                return;
            }
            Self::UnknownCa => leaf(&Issuer::new(dir, "other-ca", "berth-other-ca"), serving),
            Self::BadSignature => leaf(&Issuer::new(dir, "impostor-ca", "berth-test-ca"), serving),
            Self::WrongName => leaf(
                &ca,
                "subjectAltName=DNS:berth.example.com\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE",
            ),
            Self::Expired => ca.sign(dir, "tls", serving, Some(("20200101000000Z", "20200102000000Z"))),
            Self::NotYetValid => ca.sign(dir, "tls", serving, Some(("20900101000000Z", "20900102000000Z"))),
            Self::SignedByLeaf => {
                let middle = ca.sign(dir, "middle", "basicConstraints=CA:FALSE", None);
                let signer = Issuer { key: dir.join("middle.key"), cert: dir.join("middle.crt") };
                let mut chain = signer.sign(dir, "tls", serving, None);
                chain.push_str(&middle);
                chain
            }
        };
        std::fs::write(dir.join("tls.crt"), chain).expect("tls.crt");
    }
}

/// `openssl s_server` on 127.0.0.1 serving a [`BadCertificate`]. Dropping it
/// stops the process.
pub struct BadTlsServer {
    child: Child,
    dir: PathBuf,
    /// `https://127.0.0.1:<port>`
    pub url: String,
    /// The CA a client is given (`--ca-file`).
    pub ca_file: PathBuf,
}

impl BadTlsServer {
    /// Starts serving `kind` and waits until the port accepts connections.
    ///
    /// # Panics
    /// When `openssl` fails or does not listen within 10 s.
    pub async fn start(kind: BadCertificate) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "berth-bad-tls-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        kind.write(&dir);
        let port = free_port();
        let child = Command::new("openssl")
            .current_dir(&dir)
            .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}")])
            .args(["-key", "tls.key", "-cert", "tls.crt", "-cert_chain", "tls.crt"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let server = Self { child, url: format!("https://127.0.0.1:{port}"), ca_file: dir.join("ca.crt"), dir };
        crate::eventually("openssl s_server listens", Duration::from_secs(10), || async move {
            TcpStream::connect(("127.0.0.1", port)).ok().map(drop)
        })
        .await;
        server
    }
}

impl Drop for BadTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// ECDSA P-256 keys, as `hack/gen-tls.sh` makes.
const P256: [&str; 6] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha256", "-nodes"];

/// A CA's key and certificate.
struct Issuer {
    key: PathBuf,
    cert: PathBuf,
}

impl Issuer {
    /// A new CA `<name>.crt`, `<name>.key` with common name `cn`.
    fn new(dir: &Path, name: &str, cn: &str) -> Self {
        Self::self_signed(dir, name, cn, &[])
    }

    /// `openssl req -x509` as is (a CA certificate, valid for a day), with `extra` arguments.
    fn self_signed(dir: &Path, name: &str, cn: &str, extra: &[&str]) -> Self {
        let (key, cert, subject) = (format!("{name}.key"), format!("{name}.crt"), format!("/CN={cn}"));
        let args = ["req", "-x509", "-days", "1", "-subj", &subject, "-keyout", &key, "-out", &cert];
        openssl(dir, &[&args[..], &P256, extra].concat());
        Self { key: dir.join(key), cert: dir.join(cert) }
    }

    /// Issues `<name>.crt` for a new key `<name>.key` with `extensions`
    /// (lines of `openssl x509 -extfile`), valid for a day or from/until
    /// `dates` (`YYYYMMDDHHMMSSZ`); returns the certificate's PEM.
    fn sign(&self, dir: &Path, name: &str, extensions: &str, dates: Option<(&str, &str)>) -> String {
        let (key, csr, cert, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
        std::fs::write(dir.join(&ext), format!("{extensions}\n")).expect("extensions file");
        let subject = format!("/CN={name}");
        openssl(dir, &[&["req"], &P256[..], &["-subj", &subject, "-keyout", &key, "-out", &csr]].concat());
        let (ca_cert, ca_key) = (self.cert.to_str().expect("UTF-8 path"), self.key.to_str().expect("UTF-8 path"));
        match dates {
            None => openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-sha256",
                    "-days",
                    "1",
                    "-in",
                    &csr,
                    "-CA",
                    ca_cert,
                    "-CAkey",
                    ca_key,
                    "-set_serial",
                    "2",
                    "-extfile",
                    &ext,
                    "-out",
                    &cert,
                ],
            ),
            // Only `openssl ca` sets both dates; it needs a config and a database.
            Some((start, end)) => {
                std::fs::write(dir.join("index.txt"), "").expect("CA database");
                std::fs::write(
                    dir.join("ca.cnf"),
                    "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nrand_serial=yes\npolicy=p\n\
                     default_md=sha256\nunique_subject=no\n[p]\ncommonName=supplied\n",
                )
                .expect("CA config");
                openssl(
                    dir,
                    &[
                        "ca",
                        "-batch",
                        "-notext",
                        "-config",
                        "ca.cnf",
                        "-cert",
                        ca_cert,
                        "-keyfile",
                        ca_key,
                        "-in",
                        &csr,
                        "-startdate",
                        start,
                        "-enddate",
                        end,
                        "-extfile",
                        &ext,
                        "-out",
                        &cert,
                    ],
                );
            }
        }
        std::fs::read_to_string(dir.join(cert)).expect("certificate")
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}
