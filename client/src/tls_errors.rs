//! Explains a refused server certificate in one sentence: what is wrong,
//! then how to fix it. The cause is the typed rustls error found in the
//! source chain of a reqwest error.

use chrono::{DateTime, SecondsFormat, Utc};
use rustls::pki_types::UnixTime;
use rustls::{CertificateError, Error as Tls};

use crate::tls::TrustedBy;

/// The options that name a CA file, in the CLI and in the operator.
const CA_FILE_OPTIONS: &str = "--ca-file / --berth-ca-file";

/// Why the server's certificate was refused, for the causes a user is likely to meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CertificateProblem {
    /// A CA certificate (basic constraints CA:TRUE) served as the server's own.
    CaUsedAsEndEntity,
    /// A certificate that is not a CA signed another one of the chain.
    EndEntityUsedAsCa,
    UnknownIssuer,
    /// Its issuer's name is a trusted CA's, but not its signature.
    BadSignature,
    /// `presented` is empty when rustls does not say.
    NotValidForName {
        expected: Option<String>,
        presented: Vec<String>,
    },
    Expired {
        now: Option<DateTime<Utc>>,
        not_after: Option<DateTime<Utc>>,
    },
    NotValidYet {
        now: Option<DateTime<Utc>>,
        not_before: Option<DateTime<Utc>>,
    },
}

impl CertificateProblem {
    /// The problem `err` reports, when it is one of these.
    pub(crate) fn of(err: &Tls) -> Option<Self> {
        let Tls::InvalidCertificate(err) = err else { return None };
        Some(match err {
            CertificateError::UnknownIssuer => Self::UnknownIssuer,
            CertificateError::BadSignature => Self::BadSignature,
            CertificateError::NotValidForName => Self::NotValidForName { expected: None, presented: Vec::new() },
            CertificateError::NotValidForNameContext { expected, presented } => Self::NotValidForName {
                expected: Some(expected.to_str().into_owned()),
                presented: presented.iter().map(|name| subject_alt_name(name)).collect(),
            },
            CertificateError::Expired => Self::Expired { now: None, not_after: None },
            CertificateError::ExpiredContext { time, not_after } => {
                Self::Expired { now: date(time), not_after: date(not_after) }
            }
            CertificateError::NotValidYet => Self::NotValidYet { now: None, not_before: None },
            CertificateError::NotValidYetContext { time, not_before } => {
                Self::NotValidYet { now: date(time), not_before: date(not_before) }
            }
            // rustls passes these webpki errors on untranslated.
            CertificateError::Other(other) => match other.0.downcast_ref::<webpki::Error>()? {
                webpki::Error::CaUsedAsEndEntity => Self::CaUsedAsEndEntity,
                webpki::Error::EndEntityUsedAsCa => Self::EndEntityUsedAsCa,
                _ => return None,
            },
            _ => return None,
        })
    }

    /// What is wrong, and how to fix it; `trusted` is what the client checked against.
    pub(crate) fn explain(&self, trusted: &TrustedBy) -> String {
        let what_to_fix = match self {
            Self::CaUsedAsEndEntity => format!(
                "the server presents a CA certificate as its own (basic constraints CA:TRUE, what \
                 `openssl req -x509` makes by default); issue a leaf certificate for the server's address \
                 signed by {}, and serve that instead",
                signer(trusted)
            ),
            Self::EndEntityUsedAsCa => "the server's certificate was signed by a certificate that is not a CA \
                 (basic constraints CA:FALSE); issue it from a CA certificate"
                .to_owned(),
            Self::UnknownIssuer => {
                let unknown = "the server's certificate is signed by an unknown certificate authority";
                match trusted {
                    TrustedBy::CaFile(path) => format!(
                        "{unknown}, not by the CA in {} (the CA file given); give {CA_FILE_OPTIONS} the CA \
                         that signed it, or serve a certificate this CA signed",
                        path.display()
                    ),
                    TrustedBy::System => format!(
                        "{unknown}, not by a CA of the system trust store (no CA file was given); give \
                         {CA_FILE_OPTIONS} the CA that signed it"
                    ),
                    TrustedBy::Caller => format!(
                        "{unknown}, not by a CA that the client's TLS configuration trusts; add the CA that signed it"
                    ),
                }
            }
            Self::BadSignature => format!(
                "the server's certificate names a CA of {} as its issuer, but that CA's key did not sign \
                 it (another CA of the same name did); give {CA_FILE_OPTIONS} the CA that signed it, or \
                 reissue the certificate from this CA",
                trust_source(trusted)
            ),
            Self::NotValidForName { expected: Some(expected), presented } => {
                let has = if presented.is_empty() {
                    "it names no DNS name or IP address (the common name is not used)".to_owned()
                } else {
                    format!("it names {}", presented.join(", "))
                };
                format!(
                    "the server's certificate is not valid for {expected}, the name asked for ({has}); connect \
                     with a name it has, or reissue it with the subjectAltName {}",
                    subject_alt_name_for(expected)
                )
            }
            Self::NotValidForName { expected: None, .. } => {
                "the server's certificate is not valid for the name asked for; connect with a name it has, \
                 or reissue it with a subjectAltName for this name"
                    .to_owned()
            }
            Self::Expired { now, not_after } => format!(
                "the server's certificate expired{}{}; renew it, or set this machine's clock right if it is wrong",
                at(" at", *not_after),
                at(", and it is now", *now)
            ),
            Self::NotValidYet { now, not_before } => format!(
                "the server's certificate is not valid yet{}{}; set right the clock of this machine or of \
                 the one that issued the certificate, or reissue it",
                at(": it is valid from", *not_before),
                at(", and it is now", *now)
            ),
        };
        format!("TLS: {what_to_fix}")
    }
}

/// The rustls error in `err`'s source chain (reqwest, hyper, io, rustls).
pub(crate) fn find_rustls_error(err: &reqwest::Error) -> Option<&Tls> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<Tls>() {
            return Some(tls);
        }
        // io::Error::source() skips the error it wraps (which may be another
        // io::Error around the rustls error), so step inside it instead.
        cause = match current.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    None
}

/// Who should sign the server's certificate.
fn signer(trusted: &TrustedBy) -> String {
    match trusted {
        TrustedBy::CaFile(path) => format!("the CA that {CA_FILE_OPTIONS} names ({})", path.display()),
        TrustedBy::System => format!("a CA of the system trust store, or by your own CA named with {CA_FILE_OPTIONS}"),
        TrustedBy::Caller => "a CA that the client's TLS configuration trusts".to_owned(),
    }
}

fn trust_source(trusted: &TrustedBy) -> String {
    match trusted {
        TrustedBy::CaFile(path) => format!("the CA file {}", path.display()),
        TrustedBy::System => "the system trust store".to_owned(),
        TrustedBy::Caller => "the client's TLS configuration".to_owned(),
    }
}

fn date(time: &UnixTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(i64::try_from(time.as_secs()).ok()?, 0)
}

fn at(words: &str, time: Option<DateTime<Utc>>) -> String {
    time.map(|t| format!("{words} {}", t.to_rfc3339_opts(SecondsFormat::Secs, true))).unwrap_or_default()
}

/// A name as webpki lists it (`DnsName("a")`, `IpAddress(127.0.0.1)`) in
/// subjectAltName notation (`DNS:a`, `IP:127.0.0.1`).
fn subject_alt_name(presented: &str) -> String {
    let inner = |prefix: &str| presented.strip_prefix(prefix)?.strip_suffix(')').map(|s| s.trim_matches('"'));
    match (inner("DnsName("), inner("IpAddress(")) {
        (Some(dns), _) => format!("DNS:{dns}"),
        (_, Some(ip)) => format!("IP:{ip}"),
        _ => presented.to_owned(),
    }
}

/// The subjectAltName entry that makes a certificate valid for `name`.
fn subject_alt_name_for(name: &str) -> String {
    if name.parse::<std::net::IpAddr>().is_ok() { format!("IP:{name}") } else { format!("DNS:{name}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webpki_names_read_as_subject_alt_names() {
        assert_eq!(subject_alt_name(r#"DnsName("berth.example.com")"#), "DNS:berth.example.com");
        assert_eq!(subject_alt_name("IpAddress(10.0.0.1)"), "IP:10.0.0.1");
        assert_eq!(subject_alt_name("DirectoryName"), "DirectoryName");
        assert_eq!(subject_alt_name_for("::1"), "IP:::1");
        assert_eq!(subject_alt_name_for("localhost"), "DNS:localhost");
    }
}
