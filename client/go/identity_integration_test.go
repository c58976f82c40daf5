package client_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	client "github.com/skaphos/berth-rs/client/go"
	"github.com/skaphos/berth-rs/client/go/internal/berthtest"
)

// writeAtomically replaces path in one step, as the kubelet swaps a
// projected token.
func writeAtomically(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationKeeperKeepsLeaseAcrossServiceAccountTokenRotation holds a
// lease with a service-account token read from a file (WithAPIKeyFile),
// checked by TokenReview. Mid-tenure the file gets a new token and the old
// one is revoked (its bound Secret deleted): the keeper keeps the lease.
func TestIntegrationKeeperKeepsLeaseAcrossServiceAccountTokenRotation(t *testing.T) {
	s := integration(t)
	ns, err := s.cp.CreateNamespace("go-identity")
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := s.cp.Kubectl(append(args, "-n", ns)...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	kubectl("create", "serviceaccount", "holder")
	token := func(secret string) string {
		kubectl("create", "secret", "generic", secret)
		return kubectl("create", "token", "holder", "--audience", "berth", "--duration=1h",
			"--bound-object-kind", "Secret", "--bound-object-name", secret)
	}

	config, err := json.Marshal(map[string]any{
		"apiVersion": "berth.skaphos.io/v1alpha1",
		"kind":       "AuthenticationConfiguration",
		"tokenReview": map[string]any{
			"cacheTTL": "1s",
			"tenants":  []any{map[string]any{"serviceAccount": ns + ":holder", "tenant": "gamma", "namespaces": []string{ns}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	configFile := filepath.Join(dir, "authentication.json")
	writeAtomically(t, configFile, string(config))
	srv, err := berthtest.StartAPIServerWith(s.bin, s.cp, []berthtest.Tenant{s.alpha}, "--authentication-config="+configFile)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tlsConfig, err := srv.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}

	first := token("first")
	tokenFile := filepath.Join(dir, "token")
	writeAtomically(t, tokenFile, first+"\n")
	holder := client.New(srv.URL, client.WithAPIKeyFile(tokenFile), client.WithTLSConfig(tlsConfig))
	name := leaseName("rotating")
	k, err := holder.Keep(t.Context(), client.KeeperConfig{Namespace: ns, Name: name, Holder: "gamma/keeper", TTL: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k.Stop(t.Context()) }()

	writeAtomically(t, tokenFile, token("second")+"\n")
	kubectl("delete", "secret", "first")
	old := client.New(srv.URL, client.WithAPIKey(first), client.WithTLSConfig(tlsConfig))
	eventually(t, "the first token is refused", func() (int, error) {
		_, err := old.Get(t.Context(), ns, name)
		var apiErr *client.APIError
		if errors.As(err, &apiErr) {
			return apiErr.StatusCode, nil
		}
		return 200, err
	}, func(status int) bool { return status == 401 })
	revoked := time.Now()
	eventually(t, "a renew with the second token", func() (client.Lease, error) { return holder.Get(t.Context(), ns, name) },
		func(l client.Lease) bool {
			return len(l.Holders) == 1 && l.Holders[0].RenewedAt.After(revoked.Add(time.Second))
		})
	if !k.Held() {
		t.Fatalf("the keeper lost its lease across the rotation: %v\n%s", k.Err(), srv.Log())
	}
	if got := k.FencingToken(); got != 1 {
		t.Fatalf("fencing token %d, want 1 (the same grant)", got)
	}
}
