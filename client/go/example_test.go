package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	client "github.com/skaphos/berth-rs/client/go"
)

func Example() {
	// A stand-in for the apiserver, speaking the wire protocol over TLS.
	srv := newExampleServer("team-a-key")
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	c := client.New(srv.URL,
		client.WithAPIKey("team-a-key"),
		client.WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}),
	)
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		log.Fatal(err)
	}

	first, err := c.Acquire(ctx, "team-a", "ingest", "team-a/worker-1", 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("worker-1 acquired:", first.Acquired, "token:", first.FencingToken)

	second, err := c.Acquire(ctx, "team-a", "ingest", "team-a/worker-2", 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("worker-2 acquired:", second.Acquired, "held by:", second.Holder)

	renewed, err := c.Renew(ctx, "team-a", "ingest", "team-a/worker-1", first.FencingToken, 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("worker-1 renewed:", renewed.Acquired)

	err = c.Release(ctx, "team-a", "ingest", "team-a/worker-2", 99)
	fmt.Println("worker-2 release conflicts:", errors.Is(err, client.ErrConflict))

	if err := c.Release(ctx, "team-a", "ingest", "team-a/worker-1", first.FencingToken); err != nil {
		log.Fatal(err)
	}
	fmt.Println("worker-1 released")

	_, err = client.New(srv.URL, client.WithAPIKey("wrong"), client.WithTLSConfig(&tls.Config{RootCAs: pool})).
		Acquire(ctx, "team-a", "ingest", "team-a/worker-1", 30*time.Second)
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		fmt.Println("wrong key:", apiErr.StatusCode, apiErr.Message, errors.Is(err, client.ErrUnauthorized))
	}
	// Output:
	// worker-1 acquired: true token: 1
	// worker-2 acquired: false held by: team-a/worker-1
	// worker-1 renewed: true
	// worker-2 release conflicts: true
	// worker-1 released
	// wrong key: 401 unauthorized true
}

func ExampleClient_Keep() {
	srv := newExampleServer("team-a-key")
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c := client.New(srv.URL, client.WithAPIKey("team-a-key"), client.WithTLSConfig(&tls.Config{RootCAs: pool}))

	k, err := c.Keep(context.Background(), client.KeeperConfig{
		Namespace: "team-a", Name: "ingest", Holder: "team-a/worker-1", TTL: 30 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	// Do the guarded work under k.Context(): it is cancelled the moment the
	// lease can no longer be trusted. Pass the fencing token downstream.
	fmt.Println("held:", k.Held(), "token:", k.FencingToken())

	if err := k.Stop(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("held after stop:", k.Held(), errors.Is(k.Err(), client.ErrKeeperStopped))
	// Output:
	// held: true token: 1
	// held after stop: false true
}

// exampleLease is the stand-in's state of one at-most-once lease.
type exampleLease struct {
	holder  string
	token   int32
	expires time.Time
}

// newExampleServer is a minimal, in-memory stand-in for the apiserver: one
// tenant key, at-most-once leases, the core routes.
func newExampleServer(key string) *httptest.Server {
	var mu sync.Mutex
	leases := map[string]*exampleLease{}
	tokens := map[string]int32{}
	writeJSON := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("POST /v1alpha1/namespaces/{ns}/leases/{name}/{op}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+key {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		var req struct {
			Holder       string `json:"holder"`
			FencingToken int32  `json:"fencingToken"`
			TTLSeconds   int32  `json:"ttlSeconds"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid json body: " + err.Error()})
			return
		}
		id := r.PathValue("ns") + "/" + r.PathValue("name")
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		cur := leases[id]
		if cur != nil && !now.Before(cur.expires) {
			cur = nil
		}
		granted := func(l *exampleLease) map[string]any {
			return map[string]any{"acquired": true, "holder": l.holder, "fencingToken": l.token,
				"expiresAt": l.expires.UTC().Format(time.RFC3339Nano)}
		}
		switch r.PathValue("op") {
		case "acquire", "renew":
			renew := r.PathValue("op") == "renew"
			switch {
			case cur != nil && cur.holder == req.Holder && (!renew || cur.token == req.FencingToken):
				cur.expires = now.Add(time.Duration(req.TTLSeconds) * time.Second)
				writeJSON(w, http.StatusOK, granted(cur))
			case cur == nil && !renew:
				tokens[id]++
				cur = &exampleLease{holder: req.Holder, token: tokens[id], expires: now.Add(time.Duration(req.TTLSeconds) * time.Second)}
				leases[id] = cur
				writeJSON(w, http.StatusOK, granted(cur))
			case cur == nil:
				writeJSON(w, http.StatusOK, map[string]any{"acquired": false, "holder": ""})
			default:
				writeJSON(w, http.StatusOK, map[string]any{"acquired": false, "holder": cur.holder})
			}
		case "release":
			switch {
			case cur == nil:
				w.WriteHeader(http.StatusNoContent)
			case cur.holder == req.Holder && cur.token == req.FencingToken:
				delete(leases, id)
				w.WriteHeader(http.StatusNoContent)
			default:
				writeJSON(w, http.StatusConflict, map[string]string{"error": "lease held by another identity or token"})
			}
		default:
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found: " + strings.TrimPrefix(r.URL.Path, "/")})
		}
	})
	return httptest.NewTLSServer(mux)
}
