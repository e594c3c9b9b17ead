package servingcert

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Manager holds the serving certificate. Its methods are safe for concurrent
// use.
type Manager struct {
	cur atomic.Pointer[serving]
	log *zap.Logger
	run func(ctx context.Context) error

	mu     sync.Mutex // orders swap against Close
	closed bool
}

// serving is what a Manager serves from: certmagic's config and cache, and
// the CA that signs what it issues (InCluster; nil for FromFiles). InCluster
// swaps it whole when the CA Secret holds another CA.
type serving struct {
	magic *certmagic.Config
	cache *certmagic.Cache
	ca    []byte
}

func newManager(log *zap.Logger, s *serving) *Manager {
	m := &Manager{log: log}
	m.cur.Store(s)
	return m
}

// swap serves from s from the next handshake on and stops the previous
// cache's maintenance.
func (m *Manager) swap(s *serving) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		s.cache.Stop()
		return
	}
	m.cur.Swap(s).cache.Stop()
}

// CABundle returns the PEM of the CA that signs the serving certificate,
// when the Manager knows it (InCluster); nil for FromFiles.
func (m *Manager) CABundle() []byte { return m.cur.Load().ca }

// TLSConfig returns a server TLS config whose certificate follows rotations.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return m.cur.Load().magic.GetCertificate(hello)
		},
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// Run keeps the certificate current until ctx ends: it watches the files
// (FromFiles) or the CA Secret and the CA bundle of the webhook
// configuration (InCluster); certmagic's own maintenance renews managed
// certificates. It returns nil when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	if m.run == nil {
		<-ctx.Done()
		return nil
	}
	return m.run(ctx)
}

// Close stops certmagic's maintenance.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.cur.Load().cache.Stop()
}

func newMagic(log *zap.Logger, renewCheck time.Duration, base certmagic.Config) (*certmagic.Config, *certmagic.Cache) {
	var magic *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		RenewCheckInterval: renewCheck,
		Logger:             log,
	})
	base.Logger = log
	// The API server never asks for OCSP, and the cluster may have no way out.
	base.OCSP = certmagic.OCSPConfig{DisableStapling: true}
	magic = certmagic.New(cache, base)
	return magic, cache
}

// FileOptions configure FromFiles.
type FileOptions struct {
	// Interval between checks of the files. Zero: 10s. Secret volumes are
	// updated by an atomic symlink swap, so both files change at once.
	Interval time.Duration
	// Logger; nil discards.
	Logger *zap.Logger
}

// FromFiles serves the PEM key pair in certFile and keyFile and reloads it
// when either file's content changes. A pair that does not load (a rotation
// half-done by something other than the kubelet) is logged and the previous
// certificate kept.
func FromFiles(ctx context.Context, certFile, keyFile string, opts FileOptions) (*Manager, error) {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	certPEM, keyPEM, err := readPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	name, err := firstName(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	magic, cache := newMagic(opts.Logger, 0, certmagic.Config{DefaultServerName: name, FallbackServerName: name})
	m := newManager(opts.Logger, &serving{magic: magic, cache: cache})
	hash, err := replace(ctx, magic, cache, "", certPEM, keyPEM)
	if err != nil {
		cache.Stop()
		return nil, fmt.Errorf("loading %s and %s: %w", certFile, keyFile, err)
	}
	loaded := sum(certPEM, keyPEM)
	m.run = func(ctx context.Context) error {
		t := time.NewTicker(opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			c, k, err := readPair(certFile, keyFile)
			if err != nil {
				m.log.Warn("reading serving certificate; keeping the previous one", zap.Error(err))
				continue
			}
			if s := sum(c, k); s != loaded {
				h, err := replace(ctx, magic, cache, hash, c, k)
				if err != nil {
					m.log.Warn("loading rotated serving certificate; keeping the previous one", zap.Error(err))
					continue
				}
				loaded, hash = s, h
				m.log.Info("serving certificate reloaded", zap.String("cert", certFile))
			}
		}
	}
	return m, nil
}

// replace caches a key pair and then drops the one cached as old, so that
// every handshake finds a certificate. Not
// CacheUnmanagedCertificatePEMBytesAsReplacement: in certmagic v0.25.6 it
// takes the cache's write lock and then calls getAllMatchingCerts, which
// takes the read lock of the same RWMutex, and hangs on its first call.
func replace(ctx context.Context, magic *certmagic.Config, cache *certmagic.Cache, old string, certPEM, keyPEM []byte) (string, error) {
	h, err := magic.CacheUnmanagedCertificatePEMBytes(ctx, certPEM, keyPEM, nil)
	if err != nil {
		return "", err
	}
	if old != "" && old != h {
		cache.Remove([]string{old})
	}
	return h, nil
}

func readPair(certFile, keyFile string) (cert, key []byte, err error) {
	if cert, err = os.ReadFile(certFile); err != nil {
		return nil, nil, err
	}
	if key, err = os.ReadFile(keyFile); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func sum(parts ...[]byte) [32]byte {
	return sha256.Sum256(bytes.Join(parts, []byte{0}))
}

// firstName returns the first DNS name or IP address of the leaf in certPEM,
// which is served to clients that send no SNI (an IP URL).
func firstName(certPEM []byte) (string, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return "", errors.New("no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", err
	}
	switch {
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0], nil
	case len(leaf.IPAddresses) > 0:
		return leaf.IPAddresses[0].String(), nil
	}
	return "", errors.New("certificate has no DNS name or IP address")
}
