package servingcert

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testCA(t *testing.T) *CA {
	t.Helper()
	certPEM, keyPEM, err := newCA()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := parseCA(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ca"}, Data: map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM}})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestIssuer(t *testing.T) {
	ca := testCA(t)
	is := &Issuer{CA: ca, Lifetime: time.Hour}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		DNSNames: []string{"mcpguard-webhook.mcpguard-system.svc"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	issued, err := is.Issue(context.Background(), csr)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := parseLeaf(issued.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, name := range []string{"mcpguard-webhook.mcpguard-system.svc", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verify for %q: %v", name, err)
		}
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < time.Hour || d > time.Hour+7*time.Minute {
		t.Errorf("validity %v, want an hour plus a little backdating", d)
	}
	if _, err := is.Issue(context.Background(), &x509.CertificateRequest{}); err == nil {
		t.Error("issued for an unsigned, nameless CSR")
	}
}

func parseLeaf(certPEM []byte) (*x509.Certificate, error) { return parseFirst(certPEM) }

func parseFirst(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("no PEM")
	}
	return x509.ParseCertificate(block.Bytes)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// TestFromFilesReload rotates the files and checks the next handshake gets
// the new certificate and a broken pair keeps the old one.
func TestFromFilesReload(t *testing.T) {
	ca := testCA(t)
	dir := t.TempDir()
	write := func() *x509.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"webhook.test"}}, key)
		csr, _ := x509.ParseCertificateRequest(der)
		issued, err := (&Issuer{CA: ca, Lifetime: time.Hour}).Issue(context.Background(), csr)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		os.WriteFile(filepath.Join(dir, "tls.crt"), issued.Certificate, 0o600)
		os.WriteFile(filepath.Join(dir, "tls.key"), pemBlock("PRIVATE KEY", keyDER), 0o600)
		leaf, _ := parseFirst(issued.Certificate)
		return leaf
	}
	first := write()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := FromFiles(ctx, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), FileOptions{Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	go m.Run(ctx)
	served := func() string {
		c, err := m.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.String()
	}
	if got := served(); got != first.SerialNumber.String() {
		t.Fatalf("serving %s, want %s", got, first.SerialNumber)
	}
	second := write()
	waitFor(t, func() bool { return served() == second.SerialNumber.String() })
	// A key that does not match keeps the previous pair.
	os.WriteFile(filepath.Join(dir, "tls.key"), pemBlock("PRIVATE KEY", mustKey(t)), 0o600)
	time.Sleep(100 * time.Millisecond)
	if got := served(); got != second.SerialNumber.String() {
		t.Errorf("after a mismatched key, serving %s, want the previous %s", got, second.SerialNumber)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustKey(t *testing.T) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// FuzzKeyEncoding: every storage key round-trips through a Secret data key,
// and the encoding only uses characters a Secret key may hold.
func FuzzKeyEncoding(f *testing.F) {
	for _, s := range []string{"certificates/mcpguard-ca-0a1b/127.0.0.1/127.0.0.1.crt", "issue_cert_*.example.com", "a__b_s_x41", "é/ü", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		enc := encodeKey(key)
		for i := 0; i < len(enc); i++ {
			if !secretKeyByte(enc[i]) && enc[i] != '_' {
				t.Fatalf("encodeKey(%q) = %q holds %q", key, enc, enc[i])
			}
		}
		dec, err := decodeKey(enc)
		if err != nil || dec != key {
			t.Fatalf("decodeKey(encodeKey(%q)) = %q, %v", key, dec, err)
		}
		// decodeKey must not panic on anything.
		decodeKey(key)
	})
}
