package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io/fs"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"mcpguard.dev/mcpguard/inject"
	"mcpguard.dev/mcpguard/inject/servingcert"
)

// servedSerial dials addr trusting only caPEM and returns the serving
// certificate's serial number.
func servedSerial(t *testing.T, url string, caPEM []byte) string {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("bad CA PEM")
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("handshake with %s: %v", url, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// admissionLoad creates dry-run pods through the API server from several
// goroutines until stop is closed, and returns how many were admitted with
// the sidecar and the errors of the others.
func admissionLoad(t *testing.T, ns string, labels map[string]string, workers int) (stop func() (ok int64, errs []string)) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var okN atomic.Int64
	var mu sync.Mutex
	var errs []string
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				p := newPod(fmt.Sprintf("load-%d-%d", w, i), map[string]string{inject.AnnotationInject: "true"})
				p.Labels = labels
				got, err := client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				switch {
				case err != nil:
					mu.Lock()
					errs = append(errs, statusMessage(err))
					mu.Unlock()
				case !hasSidecar(got):
					mu.Lock()
					errs = append(errs, "admitted without the sidecar")
					mu.Unlock()
				default:
					okN.Add(1)
				}
			}
		})
	}
	return func() (int64, []string) {
		close(done)
		wg.Wait()
		return okN.Load(), errs
	}
}

// TestRotationOwnCA renews the serving certificate three times while
// admissions flow, with keep-alives off so that every admission is a new
// TLS handshake; none may fail. It then checks what a second replica sees.
func TestRotationOwnCA(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, nil)
	hook.srv.SetKeepAlivesEnabled(false)
	defer hook.srv.SetKeepAlivesEnabled(true)

	serial := servedSerial(t, hook.url, hook.certs.CABundle())
	stop := admissionLoad(t, ns, nil, 4)
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		if err := hook.certs.RenewNow(ctx, hookName); err != nil {
			stop()
			t.Fatalf("renewing: %v", err)
		}
		next := servedSerial(t, hook.url, hook.certs.CABundle())
		if next == serial {
			t.Errorf("serial %s still served after renewal", serial)
		}
		serial = next
	}
	time.Sleep(300 * time.Millisecond)
	ok, errs := stop()
	if len(errs) > 0 {
		t.Errorf("%d of %d admissions failed during rotation; first: %s", len(errs), int64(len(errs))+ok, errs[0])
	}
	if ok < 20 {
		t.Errorf("only %d admissions during rotation; the test did not exercise anything", ok)
	}
	t.Logf("%d admissions, 3 rotations, no failures", ok)

	// A second replica loads the same certificate from the Secret storage
	// instead of issuing its own, and the webhook configuration trusts the CA.
	replica, err := servingcert.InCluster(ctx, servingcert.InClusterConfig{
		Client: client, Namespace: systemNamespace, DNSNames: []string{hookName}, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	leaf, err := replica.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if got := leaf.Leaf.SerialNumber.String(); got != serial {
		t.Errorf("replica serves serial %s, the first replica %s", got, serial)
	}
	if string(replica.CABundle()) != string(hook.certs.CABundle()) {
		t.Error("replica has another CA")
	}
	mwc, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "mcpguard", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range mwc.Webhooks {
		if string(w.ClientConfig.CABundle) != string(hook.certs.CABundle()) {
			t.Errorf("webhook %s caBundle is not the CA", w.Name)
		}
	}
}

// TestRotationMountedFiles serves certificates from files swapped the way
// the kubelet updates a Secret volume, rotating three times under load.
func TestRotationMountedFiles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, nil)
	ca := newTestCA(t)
	dir := t.TempDir()
	ca.writeLeaf(t, dir)
	certs, err := servingcert.FromFiles(ctx, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), servingcert.FileOptions{Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer certs.Close()
	go certs.Run(ctx)
	srv, err := startServer(ctx, certs.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	srv.srv.SetKeepAlivesEnabled(false)

	labels := map[string]string{"mcpguard-test": "files"}
	mwc, err := webhookConfiguration("mcpguard-files", srv.url, func(m *admissionregv1.MutatingWebhookConfiguration) {
		for i := range m.Webhooks {
			m.Webhooks[i].ObjectSelector = &metav1.LabelSelector{MatchLabels: labels}
			m.Webhooks[i].ClientConfig.CABundle = ca.certPEM
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := api.Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer api.Delete(context.Background(), mwc.Name, metav1.DeleteOptions{})
	deadline := time.Now().Add(15 * time.Second)
	for srv.calls.Load() == 0 {
		p := newPod("probe", map[string]string{inject.AnnotationInject: "true"})
		p.Labels = labels
		client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if time.Now().After(deadline) {
			t.Fatal("the files-mode webhook was never called")
		}
		time.Sleep(100 * time.Millisecond)
	}

	before := srv.calls.Load()
	serial := servedSerial(t, srv.url, ca.certPEM)
	stop := admissionLoad(t, ns, labels, 4)
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		ca.writeLeaf(t, dir)
		deadline := time.Now().Add(5 * time.Second)
		for servedSerial(t, srv.url, ca.certPEM) == serial {
			if time.Now().After(deadline) {
				stop()
				t.Fatal("rotated files not served after 5s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		serial = servedSerial(t, srv.url, ca.certPEM)
	}
	time.Sleep(300 * time.Millisecond)
	ok, errs := stop()
	if len(errs) > 0 {
		t.Errorf("%d of %d admissions failed during rotation; first: %s", len(errs), int64(len(errs))+ok, errs[0])
	}
	if calls := srv.calls.Load() - before; calls < 20 {
		t.Errorf("the files-mode webhook answered only %d reviews during rotation", calls)
	}
	t.Logf("%d admissions, 3 rotations, no failures", ok)
}

type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	n       int
}

func newTestCA(t *testing.T) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// writeLeaf issues a new leaf for 127.0.0.1 and swaps it into dir as the
// kubelet does: files in a fresh directory, then an atomic rename of the
// ..data symlink; tls.crt and tls.key point through it.
func (ca *testCA) writeLeaf(t *testing.T, dir string) {
	t.Helper()
	ca.n++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(100 + ca.n)), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := x509.MarshalPKCS8PrivateKey(key)
	ts := fmt.Sprintf("..%d", ca.n)
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, ts, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, ts, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), 0o600)
	if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err != nil {
			os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f))
		}
	}
}

// TestSecretStorage checks the certmagic Storage against the real API
// server: key encoding, directory semantics, and locks between replicas.
func TestSecretStorage(t *testing.T) {
	ctx := context.Background()
	secrets := client.CoreV1().Secrets(systemNamespace)
	a := &servingcert.SecretStorage{Secrets: secrets, Name: "storage-test"}
	b := &servingcert.SecretStorage{Secrets: secrets, Name: "storage-test", PollInterval: 20 * time.Millisecond}

	keys := []string{"certificates/ca_1/*.example.com/*.example.com.crt", "certificates/ca_1/*.example.com/*.example.com.key", "certificates/ca_2/x/x.json", "top"}
	for i, k := range keys {
		if err := a.Store(ctx, k, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, k := range keys {
		v, err := b.Load(ctx, k)
		if err != nil || len(v) != 1 || v[0] != byte(i) {
			t.Errorf("Load(%q) = %v, %v", k, v, err)
		}
	}
	if _, err := b.Load(ctx, "certificates/ca_1"); err != fs.ErrNotExist {
		t.Errorf("Load of a directory: %v, want fs.ErrNotExist", err)
	}
	got, err := b.List(ctx, "certificates", false)
	if want := []string{"certificates/ca_1", "certificates/ca_2"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("List(certificates, false) = %q, %v; want %q", got, err, want)
	}
	got, err = b.List(ctx, "certificates/ca_1", true)
	if want := keys[:2]; err != nil || !slices.Equal(got, want) {
		t.Errorf("List(certificates/ca_1, true) = %q, %v; want %q", got, err, want)
	}
	if info, err := b.Stat(ctx, "certificates/ca_2"); err != nil || info.IsTerminal {
		t.Errorf("Stat(directory) = %+v, %v", info, err)
	}
	if err := a.Delete(ctx, "certificates/ca_1"); err != nil {
		t.Fatal(err)
	}
	if b.Exists(ctx, keys[0]) || !b.Exists(ctx, keys[2]) {
		t.Error("Delete of a directory removed the wrong keys")
	}
	if err := a.Delete(ctx, "missing"); err != nil {
		t.Errorf("Delete(missing) = %v", err)
	}

	if err := a.Lock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_x"); ok || err != nil {
		t.Fatalf("second replica took a held lock: %v %v", ok, err)
	}
	acquired := make(chan error, 1)
	go func() { acquired <- b.Lock(ctx, "issue_cert_x") }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-acquired:
		t.Fatalf("Lock returned while held: %v", err)
	default:
	}
	if err := a.Unlock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-acquired:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Lock did not return after Unlock")
	}
	b.Unlock(ctx, "issue_cert_x")

	// A holder that dies keeps the lock for LockTTL at most.
	dead := &servingcert.SecretStorage{Secrets: secrets, Name: "storage-test", LockTTL: 300 * time.Millisecond}
	if err := dead.Lock(ctx, "stale"); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := b.Lock(tctx, "stale"); err != nil {
		t.Fatalf("stale lock never expired: %v", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("took a live lock after %v", d)
	}
	sec, err := secrets.Get(ctx, "storage-test", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(slices.Collect(maps.Keys(sec.Data)), "k.certificates_sca__2_sx_sx.json") {
		t.Errorf("secret keys %q: want %q for certificates/ca_2/x/x.json", slices.Collect(maps.Keys(sec.Data)), "k.certificates_sca__2_sx_sx.json")
	}
}
