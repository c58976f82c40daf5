package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A refused server certificate is explained with what to fix, one case per
// kind of bad certificate, against a real TLS listener on 127.0.0.1 serving
// a certificate made for the case.

// testCA is a CA certificate and its key.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, commonName string) testCA {
	t.Helper()
	template := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	cert, key := issue(t, template, nil)
	return testCA{cert: cert, key: key}
}

// issue signs template with parent (nil: self-signed) for a new key.
func issue(t *testing.T, template *x509.Certificate, parent *testCA) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	template.SerialNumber = serial
	issuer, signer := template, key
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, issuer, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// leafTemplate is a serving certificate for 127.0.0.1, valid now.
func leafTemplate() *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: "berth-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
}

// serveTLS serves GET /healthz over TLS with chain (the server's
// certificate first) and key.
func serveTLS(t *testing.T, key *ecdsa.PrivateKey, chain ...*x509.Certificate) *httptest.Server {
	t.Helper()
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	certificate := tls.Certificate{PrivateKey: key}
	for _, cert := range chain {
		certificate.Certificate = append(certificate.Certificate, cert.Raw)
	}
	server.TLS = &tls.Config{Certificates: []tls.Certificate{certificate}}
	// The refused handshakes are the point; the server need not log them.
	server.Config.ErrorLog = log.New(io.Discard, "", 0)
	server.StartTLS()
	t.Cleanup(server.Close)
	return server
}

// pingTrusting pings server with roots as RootCAs (nil: the system trust store).
func pingTrusting(server *httptest.Server, roots ...*x509.Certificate) error {
	var opts []Option
	if roots != nil {
		pool := x509.NewCertPool()
		for _, root := range roots {
			pool.AddCert(root)
		}
		opts = append(opts, WithTLSConfig(&tls.Config{RootCAs: pool}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return New(server.URL, opts...).Ping(ctx)
}

// explanation is the error's [*CertificateError] text, after checking that it
// says each of parts.
func requireExplanation(t *testing.T, err error, parts ...string) {
	t.Helper()
	var certErr *CertificateError
	if !errors.As(err, &certErr) {
		t.Fatalf("not a *CertificateError: %v", err)
	}
	for _, part := range parts {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("%q missing from: %v", part, err)
		}
	}
}

func TestUnknownAuthorityNamesTheIssuerAndTheRootCAs(t *testing.T) {
	trusted, other := newTestCA(t, "berth-test-ca"), newTestCA(t, "berth-other-ca")
	cert, key := issue(t, leafTemplate(), &other)
	err := pingTrusting(serveTLS(t, key, cert), trusted.cert)
	requireExplanation(t, err,
		"client: GET /healthz: TLS: the server's certificate is signed by an unknown certificate authority",
		"not by a CA of the RootCAs of WithTLSConfig",
		`its issuer is "CN=berth-other-ca"`,
		"add the CA that signed it to the RootCAs of WithTLSConfig")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("the x509 error is not kept: %v", err)
	}
}

func TestUnknownAuthoritySaysTheSystemTrustStoreWasUsed(t *testing.T) {
	ca := newTestCA(t, "berth-test-ca")
	cert, key := issue(t, leafTemplate(), &ca)
	requireExplanation(t, pingTrusting(serveTLS(t, key, cert)),
		"not by a CA of the system trust store (no RootCAs were given)",
		"add the CA that signed it to the RootCAs of WithTLSConfig")
}

func TestSignatureOfAnotherCAWithTheSameNameIsAnUnknownAuthority(t *testing.T) {
	trusted, impostor := newTestCA(t, "berth-test-ca"), newTestCA(t, "berth-test-ca")
	cert, key := issue(t, leafTemplate(), &impostor)
	requireExplanation(t, pingTrusting(serveTLS(t, key, cert), trusted.cert),
		`its issuer is "CN=berth-test-ca"; a CA of that name with another key is unknown too`)
}

func TestWrongNameSaysWhichNameWasAskedForAndWhichItHas(t *testing.T) {
	ca := newTestCA(t, "berth-test-ca")
	template := leafTemplate()
	template.IPAddresses, template.DNSNames = nil, []string{"berth.example.com"}
	cert, key := issue(t, template, &ca)
	requireExplanation(t, pingTrusting(serveTLS(t, key, cert), ca.cert),
		"not valid for 127.0.0.1, the name asked for (it names DNS:berth.example.com)",
		"reissue it with the subjectAltName IP:127.0.0.1")
}

func TestCertificateOutsideItsValiditySaysWhen(t *testing.T) {
	for _, c := range []struct {
		name           string
		year           int
		what, whatToDo string
	}{
		{"expired", 2020, "the server's certificate expired at 2020-01-02T00:00:00Z, and it is now", "renew it"},
		{"not yet valid", 2090, "not valid yet: it is valid from 2090-01-01T00:00:00Z, and it is now", "clock"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ca := newTestCA(t, "berth-test-ca")
			template := leafTemplate()
			template.NotBefore = time.Date(c.year, 1, 1, 0, 0, 0, 0, time.UTC)
			template.NotAfter = time.Date(c.year, 1, 2, 0, 0, 0, 0, time.UTC)
			cert, key := issue(t, template, &ca)
			requireExplanation(t, pingTrusting(serveTLS(t, key, cert), ca.cert), c.what, c.whatToDo)
		})
	}
}

func TestCertificateSignedByALeafSaysToIssueItFromACA(t *testing.T) {
	ca := newTestCA(t, "berth-test-ca")
	middleTemplate := leafTemplate()
	middleTemplate.Subject.CommonName = "berth-middle"
	middleCert, middleKey := issue(t, middleTemplate, &ca)
	middle := testCA{cert: middleCert, key: middleKey}
	cert, key := issue(t, leafTemplate(), &middle)
	err := pingTrusting(serveTLS(t, key, cert, middleCert), ca.cert)
	requireExplanation(t, err, "signed by a certificate that is not a CA", "issue it from a CA certificate")
}

// Go, unlike rustls, accepts a CA certificate as the server's own when it
// is trusted: the Rust client and the operator refuse what this accepts.
func TestCACertificateServedAsTheServersOwnIsAcceptedByGo(t *testing.T) {
	ca := newTestCA(t, "berth-test")
	if err := pingTrusting(serveTLS(t, ca.key, ca.cert), ca.cert); err != nil {
		t.Fatalf("Go refuses a trusted CA certificate as the server's own: %v", err)
	}
}
