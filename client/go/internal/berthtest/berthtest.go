// Package berthtest runs the real Berth stack for the Go client's
// integration tests: the project's test control plane (etcd and
// kube-apiserver, through hack/control-plane), the BerthLease CRD, and the
// Rust apiserver binary as a child process on loopback with a generated CA,
// serving certificate and keys file. It mirrors the Rust harness in
// hack/testenv.
package berthtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// RepoRoot finds the repository root: the nearest parent of the working
// directory that holds hack/control-plane.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "control-plane")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("berthtest: no parent directory holds hack/control-plane")
		}
		dir = parent
	}
}

// ControlPlane is the project's test control plane.
type ControlPlane struct {
	Repo       string
	Dir        string
	Kubeconfig string
	BinDir     string
}

// StartControlPlane runs `hack/control-plane up` on the test state
// directory (BERTH_TEST_CONTROL_PLANE_DIR, else <repo>/.run/test-control-plane),
// which reuses a healthy control plane or starts one, and applies the
// BerthLease CRD from config/crd/berthlease.yaml.
func StartControlPlane(repo string) (*ControlPlane, error) {
	dir := os.Getenv("BERTH_TEST_CONTROL_PLANE_DIR")
	if dir == "" {
		dir = filepath.Join(repo, ".run", "test-control-plane")
	}
	up := exec.Command(filepath.Join(repo, "hack", "control-plane"), "up")
	up.Env = append(os.Environ(), "BERTH_CONTROL_PLANE_DIR="+dir)
	if out, err := up.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("berthtest: hack/control-plane up: %w\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "bin-dir"))
	if err != nil {
		return nil, fmt.Errorf("berthtest: control plane records no bin-dir: %w", err)
	}
	cp := &ControlPlane{Repo: repo, Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig"), BinDir: strings.TrimSpace(string(bin))}
	if _, err := cp.Kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=berth-go-tests",
		"-f", filepath.Join(repo, "config", "crd", "berthlease.yaml")); err != nil {
		return nil, err
	}
	if _, err := cp.Kubectl("wait", "--for=condition=Established", "--timeout=60s",
		"crd/berthleases.berth.skaphos.io"); err != nil {
		return nil, err
	}
	return cp, nil
}

// Kubectl runs the pinned kubectl against the control plane.
func (cp *ControlPlane) Kubectl(args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(cp.BinDir, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cp.Kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("berthtest: kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// CreateNamespace creates a namespace named prefix plus a random suffix.
func (cp *ControlPlane) CreateNamespace(prefix string) (string, error) {
	name := prefix + "-" + randomHex(4)
	_, err := cp.Kubectl("create", "namespace", name)
	return name, err
}

// Tenant is one line of the keys file.
type Tenant struct {
	Name string
	// Key is the plain key, sent as "Authorization: Bearer <key>".
	Key string
	// Namespaces limits the tenant; empty writes a two-field line (every
	// namespace).
	Namespaces []string
}

// NewTenant is a tenant with a random key.
func NewTenant(name string, namespaces ...string) Tenant {
	return Tenant{Name: name, Key: randomHex(16), Namespaces: namespaces}
}

func (t Tenant) line() string {
	sum := sha256.Sum256([]byte(t.Key))
	line := t.Name + ":" + hex.EncodeToString(sum[:])
	if len(t.Namespaces) > 0 {
		line += ":" + strings.Join(t.Namespaces, ",")
	}
	return line
}

// APIServer is a running apiserver binary.
type APIServer struct {
	// URL is https://127.0.0.1:<port>.
	URL string
	// HealthURL is the plain-HTTP probe listener.
	HealthURL string
	// MetricsURL is the plain-HTTP metrics listener.
	MetricsURL string
	// Dir holds the certificates, the keys file and the log.
	Dir string
	// CAFile is the CA that signed the serving certificate.
	CAFile string

	bin    string
	args   []string
	cmd    *exec.Cmd
	exited chan struct{}
}

var serverCounter atomic.Int32

// StartAPIServer starts bin with a fresh CA and serving certificate
// (hack/gen-tls.sh), a keys file for tenants, free loopback ports, and the
// control plane's kubeconfig, and waits until /readyz answers 200.
func StartAPIServer(bin string, cp *ControlPlane, tenants []Tenant) (*APIServer, error) {
	return StartAPIServerWith(bin, cp, tenants)
}

// StartAPIServerWith is [StartAPIServer] with extra flags, such as
// --authentication-config.
func StartAPIServerWith(bin string, cp *ControlPlane, tenants []Tenant, extraArgs ...string) (*APIServer, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("berthtest: apiserver binary: %w", err)
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("berth-go-apiserver-%d-", serverCounter.Add(1)))
	if err != nil {
		return nil, err
	}
	if out, err := exec.Command(filepath.Join(cp.Repo, "hack", "gen-tls.sh"), dir, "berth-apiserver").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("berthtest: hack/gen-tls.sh: %w\n%s", err, out)
	}
	var keys strings.Builder
	keys.WriteString("# tenant:sha256(key)[:namespaces]\n")
	for _, t := range tenants {
		keys.WriteString(t.line() + "\n")
	}
	keysFile := filepath.Join(dir, "api-keys")
	if err := os.WriteFile(keysFile, []byte(keys.String()), 0o600); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	s := &APIServer{
		URL:        fmt.Sprintf("https://127.0.0.1:%d", ports[0]),
		HealthURL:  fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		MetricsURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		Dir:        dir,
		CAFile:     filepath.Join(dir, "ca.crt"),
		bin:        bin,
		args: []string{
			fmt.Sprintf("--listen-addr=127.0.0.1:%d", ports[0]),
			"--tls-cert-file=" + filepath.Join(dir, "tls.crt"),
			"--tls-key-file=" + filepath.Join(dir, "tls.key"),
			"--kubeconfig=" + cp.Kubeconfig,
			fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[1]),
			fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[2]),
			"--api-keys-file=" + keysFile,
			"--log-format=text",
		},
	}
	s.args = append(s.args, extraArgs...)
	if err := s.Restart(); err != nil {
		return nil, err
	}
	return s, nil
}

// Restart starts the process again with the same ports and files, after
// [APIServer.Kill], and waits until it is ready.
func (s *APIServer) Restart() error {
	if s.cmd != nil {
		return errors.New("berthtest: apiserver is running")
	}
	logFile, err := os.OpenFile(s.LogFile(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	killWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("berthtest: starting %s: %w", s.bin, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func(exited chan struct{}) { _ = cmd.Wait(); close(exited) }(s.exited)

	probe := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			s.cmd = nil
			return fmt.Errorf("berthtest: apiserver exited before it was ready:\n%s", s.Log())
		default:
		}
		if resp, err := probe.Get(s.HealthURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Kill()
	return fmt.Errorf("berthtest: apiserver was not ready within 60s:\n%s", s.Log())
}

// Kill sends SIGKILL to the process and reaps it.
func (s *APIServer) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Close kills the process and removes its directory.
func (s *APIServer) Close() {
	s.Kill()
	_ = os.RemoveAll(s.Dir)
}

// Metric reads the value of one sample, exactly as printed (`name` or
// `name{label="value",…}`), from the metrics listener.
func (s *APIServer) Metric(series string) (float64, error) {
	resp, err := http.Get(s.MetricsURL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(text), "\n") {
		if value, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(value), 64)
		}
	}
	return 0, fmt.Errorf("berthtest: no sample %s in the metrics", series)
}

// LogFile is where the process logs.
func (s *APIServer) LogFile() string { return filepath.Join(s.Dir, "apiserver.log") }

// Log is everything the process has logged so far.
func (s *APIServer) Log() string {
	b, _ := os.ReadFile(s.LogFile())
	return string(b)
}

// TLSConfig trusts exactly the CA that signed the serving certificate.
func (s *APIServer) TLSConfig() (*tls.Config, error) {
	return CAConfig(s.CAFile)
}

// CAConfig is a TLS configuration whose only root is the PEM CA in file.
func CAConfig(file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("berthtest: no certificate in %s", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// GenerateCA writes a fresh, unrelated CA into a new directory under dir
// and returns its certificate file.
func GenerateCA(repo, dir string) (string, error) {
	out := filepath.Join(dir, "other-ca")
	if b, err := exec.Command(filepath.Join(repo, "hack", "gen-tls.sh"), out, "other").CombinedOutput(); err != nil {
		return "", fmt.Errorf("berthtest: hack/gen-tls.sh: %w\n%s", err, b)
	}
	return filepath.Join(out, "ca.crt"), nil
}

// freePorts are n loopback ports that were free a moment ago (all held
// open together, so they differ).
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	var lc net.ListenConfig
	for range n {
		l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
