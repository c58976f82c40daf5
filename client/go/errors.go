package client

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinels for the status codes of docs/api.md (an [*APIError] matches the one
// of its status code under [errors.Is]), and for how a [Keeper] ends.
var (
	// ErrBadRequest: 400, a field or name failed the apiserver's checks.
	ErrBadRequest = errors.New("client: bad request")
	// ErrUnauthorized: 401, the key is missing or unknown.
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrForbidden: 403, the tenant may not use this namespace or holder.
	ErrForbidden = errors.New("client: forbidden")
	// ErrNotFound: 404, no such lease (or one of another tenant).
	ErrNotFound = errors.New("client: not found")
	// ErrConflict: 409, [Client.Release] of a lease that another holder or
	// fencing token holds.
	ErrConflict = errors.New("client: lease conflict")

	// ErrNotAcquired: [Client.Keep] could not get the lease because another
	// holder has it (or it expired before the keeper could renew it).
	ErrNotAcquired = errors.New("client: lease not acquired")
	// ErrLeaseLost is the cause of a [Keeper]'s context when the lease was
	// lost: the apiserver refused a renew, or the local deadline passed
	// before a renew succeeded.
	ErrLeaseLost = errors.New("client: lease lost")
	// ErrKeeperStopped is the cause of a [Keeper]'s context after
	// [Keeper.Stop].
	ErrKeeperStopped = errors.New("client: keeper stopped")
)

// APIError is a non-success answer of the apiserver.
type APIError struct {
	// StatusCode is the HTTP status, e.g. 403.
	StatusCode int
	// Message is the "error" field of the body, e.g. "not authorized for
	// this namespace", or the plain body when it is not JSON.
	Message string
	// RequestID is the X-Request-Id of the answer, for the apiserver's log.
	RequestID string
	// RetryAfter is the answer's Retry-After in seconds, or zero. An
	// overloaded apiserver answers 503 "overloaded, retry later" with
	// Retry-After: 1; a [Keeper] waits that long before its next renew
	// when the wait ends before its deadline.
	RetryAfter time.Duration
}

// Error reads "client: <status> <text>: <message>".
func (e *APIError) Error() string {
	msg := fmt.Sprintf("client: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RequestID != "" && e.StatusCode >= 500 {
		msg += " (request id " + e.RequestID + ")"
	}
	return msg
}

// Is reports whether target is the sentinel of e's status code.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrBadRequest:
		return e.StatusCode == http.StatusBadRequest
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	}
	return false
}

// newAPIError reads the error body of resp: `{"error": "..."}`, or plain
// text for the routes that answer text.
func newAPIError(resp *http.Response) *APIError {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
	// Delay-seconds only; the HTTP-date form is ignored.
	if s, err := strconv.ParseUint(strings.TrimSpace(resp.Header.Get("Retry-After")), 10, 31); err == nil {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	var body struct {
		Error     string `json:"error"`
		RequestID string `json:"requestId"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		e.Message = body.Error
		if e.RequestID == "" {
			e.RequestID = body.RequestID
		}
	} else {
		e.Message = strings.TrimSpace(string(raw))
	}
	return e
}

// CertificateError is a refused server certificate, explained: what is
// wrong and how to fix it. Err is the transport's error, so [errors.As]
// still finds the [x509.UnknownAuthorityError], [x509.HostnameError] or
// [x509.CertificateInvalidError] in it.
type CertificateError struct {
	// Explanation is one sentence, e.g. "the server's certificate expired
	// at 2020-01-02T00:00:00Z, and it is now …; renew it, …".
	Explanation string
	Err         error
}

// Error reads "TLS: <explanation>".
func (e *CertificateError) Error() string { return "TLS: " + e.Explanation }

// Unwrap returns the transport's error.
func (e *CertificateError) Unwrap() error { return e.Err }

// explainCertificate wraps err in a [*CertificateError] when it holds one of
// the certificate errors a user is likely to meet; otherwise it returns err.
// trustedBy names what the certificate was checked against.
func explainCertificate(err error, trustedBy string) error {
	var explanation string
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var nonCA *x509.Certificate
	if errors.As(err, &unknown) && unknown.Cert != nil {
		// Go reports a certificate signed by one that is not a CA as an
		// unknown authority (NotAuthorizedToSign is only its unexported
		// hint), so the chain the server sent is read.
		nonCA = signedByNonCA(err, unknown.Cert)
	}
	switch {
	case nonCA != nil:
		explanation = fmt.Sprintf("the server's certificate was signed by a certificate that is not a CA (%q); "+
			"issue it from a CA certificate", nonCA.Subject.String())
	case unknown.Cert != nil:
		// Go reports a certificate signed by another CA of a trusted CA's
		// name as an unknown authority too.
		explanation = fmt.Sprintf("the server's certificate is signed by an unknown certificate authority, "+
			"not by a CA of %s (its issuer is %q; a CA of that name with another key is unknown too); "+
			"add the CA that signed it to the RootCAs of WithTLSConfig",
			trustedBy, unknown.Cert.Issuer.String())
	case errors.As(err, &hostname) && hostname.Certificate != nil:
		has := "it names no DNS name or IP address (the common name is not used)"
		if names := subjectAltNames(hostname.Certificate); len(names) > 0 {
			has = "it names " + strings.Join(names, ", ")
		}
		explanation = fmt.Sprintf("the server's certificate is not valid for %s, the name asked for (%s); "+
			"connect with a name it has, or reissue it with the subjectAltName %s",
			hostname.Host, has, subjectAltNameFor(hostname.Host))
	case errors.As(err, &invalid) && invalid.Cert != nil && invalid.Reason == x509.Expired:
		now := time.Now().UTC()
		if now.Before(invalid.Cert.NotBefore) {
			explanation = fmt.Sprintf("the server's certificate is not valid yet: it is valid from %s, and it is now %s; "+
				"set right the clock of this machine or of the one that issued the certificate, or reissue it",
				rfc3339(invalid.Cert.NotBefore), rfc3339(now))
		} else {
			explanation = fmt.Sprintf("the server's certificate expired at %s, and it is now %s; "+
				"renew it, or set this machine's clock right if it is wrong",
				rfc3339(invalid.Cert.NotAfter), rfc3339(now))
		}
	default:
		return err
	}
	return &CertificateError{Explanation: explanation, Err: err}
}

// signedByNonCA is the certificate of the chain the server sent (in err)
// that signed cert while not being a CA, or nil.
func signedByNonCA(err error, cert *x509.Certificate) *x509.Certificate {
	var verification *tls.CertificateVerificationError
	if !errors.As(err, &verification) {
		return nil
	}
	for _, sent := range verification.UnverifiedCertificates {
		signed := sent.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) == nil
		if sent != cert && signed && !(sent.BasicConstraintsValid && sent.IsCA) {
			return sent
		}
	}
	return nil
}

// subjectAltNames lists cert's DNS names and IP addresses as "DNS:a", "IP:b".
func subjectAltNames(cert *x509.Certificate) []string {
	var names []string
	for _, name := range cert.DNSNames {
		names = append(names, "DNS:"+name)
	}
	for _, ip := range cert.IPAddresses {
		names = append(names, "IP:"+ip.String())
	}
	return names
}

// subjectAltNameFor is the subjectAltName entry that makes a certificate valid for host.
func subjectAltNameFor(host string) string {
	if net.ParseIP(host) != nil {
		return "IP:" + host
	}
	return "DNS:" + host
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
