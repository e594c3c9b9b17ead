package servingcert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/caddyserver/certmagic"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// CA is mcpguard's webhook CA. It signs serving certificates only.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
	keyPEM  []byte
}

// caLifetime is long because rotating the CA means updating every
// webhook configuration's caBundle; leaves rotate often instead.
const caLifetime = 10 * 365 * 24 * time.Hour

// LoadOrCreateCA reads the CA from the kubernetes.io/tls Secret name, or
// creates it with the owner references owners (nil: none). Replicas racing
// to create it all end up with the winner's.
func LoadOrCreateCA(ctx context.Context, secrets corev1client.SecretInterface, name string, owners []metav1.OwnerReference) (*CA, error) {
	for range 3 {
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return parseCA(s)
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading CA secret %q: %w", name, err)
		}
		certPEM, keyPEM, err := newCA()
		if err != nil {
			return nil, err
		}
		ca, err := publishCA(ctx, secrets, name, certPEM, keyPEM, owners)
		if !errors.Is(err, errVanished) {
			return ca, err
		}
	}
	return nil, fmt.Errorf("CA secret %q: gave up after repeated create/get races", name)
}

// errVanished: a Secret that was there a moment ago is gone again.
var errVanished = errors.New("deleted while being read")

// publishCA creates the CA Secret name holding certPEM and keyPEM and
// returns that CA or, if the Secret exists already, the one it holds: the
// CA of a webhook is always the Secret's, whoever created it.
func publishCA(ctx context.Context, secrets corev1client.SecretInterface, name string, certPEM, keyPEM []byte, owners []metav1.OwnerReference) (*CA, error) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Labels:          map[string]string{"app.kubernetes.io/managed-by": "mcpguard"},
			OwnerReferences: owners,
		},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}
	created, err := secrets.Create(ctx, s, metav1.CreateOptions{})
	if err == nil {
		return parseCA(created)
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating CA secret %q: %w", name, err)
	}
	s, err = secrets.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("CA secret %q: %w", name, errVanished)
	}
	if err != nil {
		return nil, fmt.Errorf("reading CA secret %q: %w", name, err)
	}
	return parseCA(s)
}

func parseCA(s *corev1.Secret) (*CA, error) {
	certPEM, keyPEM := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("CA secret %q: %q and %q must hold PEM", s.Name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA secret %q: %w", s.Name, err)
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA secret %q: %w", s.Name, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok || !cert.IsCA {
		return nil, fmt.Errorf("CA secret %q does not hold a CA certificate and its signing key", s.Name)
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: signer, keyPEM: keyPEM}, nil
}

func newCA() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "mcpguard webhook CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

// Issuer is the certmagic.Issuer that signs serving certificates with a CA.
type Issuer struct {
	CA *CA
	// Lifetime of an issued certificate. certmagic renews it when a third of
	// it remains.
	Lifetime time.Duration
}

var _ certmagic.Issuer = (*Issuer)(nil)

// Issue signs the CSR's names for server authentication.
func (is *Issuer) Issue(_ context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR signature: %w", err)
	}
	if len(csr.DNSNames) == 0 && len(csr.IPAddresses) == 0 {
		return nil, errors.New("CSR names no DNS name or IP address")
	}
	now := time.Now()
	// Backdate a little for clock skew between the webhook and the API server.
	back := min(is.Lifetime/10, 5*time.Minute)
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: firstOf(csr)},
		DNSNames:     csr.DNSNames,
		IPAddresses:  csr.IPAddresses,
		NotBefore:    now.Add(-back),
		NotAfter:     now.Add(is.Lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.CA.Cert, csr.PublicKey, is.CA.key)
	if err != nil {
		return nil, fmt.Errorf("signing serving certificate: %w", err)
	}
	return &certmagic.IssuedCertificate{Certificate: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// IssuerKey names the CA, so that certificates of another CA are never
// mistaken for this one's in storage.
func (is *Issuer) IssuerKey() string {
	h := sha256.Sum256(is.CA.Cert.Raw)
	return "mcpguard-ca-" + hex.EncodeToString(h[:6])
}

func firstOf(csr *x509.CertificateRequest) string {
	if len(csr.DNSNames) > 0 {
		return csr.DNSNames[0]
	}
	return csr.IPAddresses[0].String()
}
