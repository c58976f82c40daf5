package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds each request of a [Client] unless [WithTimeout]
// says otherwise. It does not bound a [Client.Watch] stream, and
// [Client.AcquireWait] adds its wait to it.
const DefaultTimeout = 10 * time.Second

// maxResponseBytes caps how much of a response body is read.
const maxResponseBytes = 1 << 20

// Client talks to one Berth apiserver. It is safe for concurrent use.
// Create one with [New]; the zero value is not usable.
type Client struct {
	baseURL    string
	httpClient *http.Client
	apiKeyFunc func() string
	timeout    time.Duration
}

// Option configures a [Client] in [New].
type Option func(*Client)

// New returns a client for the apiserver at baseURL, e.g.
// "https://berth.example.com:8443". A trailing slash is ignored. Options
// apply in order.
func New(baseURL string, opts ...Option) *Client {
	c := &Client{
		baseURL:    strings.TrimRight(baseURL, "/"),
		httpClient: &http.Client{},
		timeout:    DefaultTimeout,
	}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// WithAPIKey sends key as "Authorization: Bearer <key>" on every request.
func WithAPIKey(key string) Option {
	return func(c *Client) { c.apiKeyFunc = func() string { return key } }
}

// WithAPIKeyFunc calls getter before every request for the bearer key, for
// keys that are rotated while the process runs (e.g. read from a mounted
// Secret). A nil getter, or an empty key, sends no Authorization header.
func WithAPIKeyFunc(getter func() string) Option {
	return func(c *Client) { c.apiKeyFunc = getter }
}

// WithHTTPClient replaces the HTTP client. A nil client keeps the current
// one. Its Timeout, when set, also cuts [Client.Watch] streams; prefer
// [WithTimeout], which bounds each request but not a stream.
func WithHTTPClient(httpClient *http.Client) Option {
	return func(c *Client) {
		if httpClient != nil {
			c.httpClient = httpClient
		}
	}
}

// WithTimeout bounds each request (see [DefaultTimeout]). Zero or a
// negative value means no bound beyond the caller's context.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.timeout = d }
}

// WithTLSConfig sets the TLS configuration of the client's transport, for
// example a RootCAs pool holding the apiserver's CA. A nil cfg changes
// nothing. When the HTTP client's transport is not an [*http.Transport], it
// is replaced by a clone of [http.DefaultTransport]. The HTTP client passed
// to [WithHTTPClient] is not modified: the client gets a copy.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *Client) {
		if cfg == nil {
			return
		}
		var transport *http.Transport
		if t, ok := c.httpClient.Transport.(*http.Transport); ok && t != nil {
			transport = t.Clone()
		} else {
			transport = http.DefaultTransport.(*http.Transport).Clone()
		}
		transport.TLSClientConfig = cfg
		hc := *c.httpClient
		hc.Transport = transport
		c.httpClient = &hc
	}
}

// Ping checks that the apiserver answers GET /healthz with 200. The route
// needs no key, so Ping proves the address and TLS setup, not the key.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := c.withTimeout(ctx, 0)
	defer cancel()
	resp, err := c.send(ctx, http.MethodGet, "/healthz", nil)
	if err != nil {
		return err
	}
	defer drain(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return newAPIError(resp)
	}
	return nil
}

// withTimeout bounds ctx by the client's timeout plus extra.
func (c *Client) withTimeout(ctx context.Context, extra time.Duration) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout+extra)
}

// send builds and sends one request that accepts JSON. body, when non-nil,
// is sent as JSON. A transport failure is wrapped with the method and path.
func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	return c.sendAccept(ctx, method, path, body, "application/json")
}

// sendAccept is send with the given Accept header.
func (c *Client) sendAccept(ctx context.Context, method, path string, body any, accept string) (*http.Response, error) {
	if c.baseURL == "" {
		return nil, errors.New("client: base URL is required")
	}
	var reader io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("client: encode request: %w", err)
		}
		reader = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, reader)
	if err != nil {
		return nil, fmt.Errorf("client: build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method == http.MethodPost {
		// Acquire, renew and release are idempotent by the lease rules. A
		// present but empty Idempotency-Key tells net/http so without
		// sending the header: a POST that meets a keep-alive connection the
		// server has just closed is then retried on a new one, instead of
		// failing with EOF.
		req.Header["Idempotency-Key"] = nil
	}
	req.Header.Set("Accept", accept)
	if c.apiKeyFunc != nil {
		if key := c.apiKeyFunc(); key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", method, path, explainCertificate(err, c.trustedBy()))
	}
	return resp, nil
}

// trustedBy names what the server's certificate is checked against, for
// [CertificateError].
func (c *Client) trustedBy() string {
	transport, ok := c.httpClient.Transport.(*http.Transport)
	switch {
	case c.httpClient.Transport == nil, ok && (transport.TLSClientConfig == nil || transport.TLSClientConfig.RootCAs == nil):
		return "the system trust store (no RootCAs were given)"
	case ok:
		return "the RootCAs of WithTLSConfig"
	default:
		return "the HTTP client's transport"
	}
}

// do sends a request bounded by the client's timeout plus extra, and
// decodes a 200 answer into out (nil: ignore the body). 204 is success
// too. Any other status is an [*APIError].
func (c *Client) do(ctx context.Context, method, path string, body, out any, extra time.Duration) error {
	ctx, cancel := c.withTimeout(ctx, extra)
	defer cancel()
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer drain(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		if out == nil {
			return nil
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(out); err != nil {
			return fmt.Errorf("client: %s %s: decode response: %w", method, path, err)
		}
		return nil
	case http.StatusNoContent:
		return nil
	default:
		return newAPIError(resp)
	}
}

// drain reads what is left of a body (bounded) so the connection can be
// reused, then closes it.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxResponseBytes))
	_ = body.Close()
}

// leasePath is the path of lease namespace/name, plus suffix segments.
func leasePath(namespace, name string, suffix ...string) string {
	p := "/v1alpha1/namespaces/" + url.PathEscape(namespace) + "/leases/" + url.PathEscape(name)
	for _, s := range suffix {
		p += "/" + s
	}
	return p
}
