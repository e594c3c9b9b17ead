package servingcert

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// SecretStorage is a certmagic.Storage kept in one Kubernetes Secret, so
// that webhook replicas share certificates and take turns renewing them.
// Every write is a compare-and-swap on the Secret's resourceVersion; locks
// are entries of the same Secret, with an expiry so that a crashed holder
// blocks others for at most LockTTL. It is safe for concurrent use.
//
// Data keys encode storage keys: "k." then the key with "_" as "__", "/" as
// "_s" and any other byte a Secret key may not hold as "_xHH"; locks are
// "lock." and the encoded name.
type SecretStorage struct {
	Secrets corev1client.SecretInterface
	// Name of the Secret; it is created on first write.
	Name string
	// Owners returns the owner references of the Secret when a write
	// creates it; an error fails that write. Nil: none.
	Owners func(ctx context.Context) ([]metav1.OwnerReference, error)
	// LockTTL bounds how long a lock outlives a holder that never unlocks.
	// Zero: 1m. Critical sections (issuing from a local CA) take
	// milliseconds.
	LockTTL time.Duration
	// PollInterval between attempts to take a held lock. Zero: 250ms.
	PollInterval time.Duration

	mu     sync.Mutex
	tokens map[string]string // lock name → our token
}

var (
	_ certmagic.Storage   = (*SecretStorage)(nil)
	_ certmagic.TryLocker = (*SecretStorage)(nil)
)

const (
	keyPrefix  = "k."
	lockPrefix = "lock."
)

type lockRecord struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

var errNoChange = errors.New("no change")

// update applies fn to the Secret's data and writes it, retrying on
// conflicts. fn returning errNoChange skips the write.
func (s *SecretStorage) update(ctx context.Context, fn func(map[string][]byte) error) error {
	for {
		sec, err := s.Secrets.Get(ctx, s.Name, metav1.GetOptions{})
		create := apierrors.IsNotFound(err)
		if err != nil && !create {
			return fmt.Errorf("reading secret %q: %w", s.Name, err)
		}
		if create {
			sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Labels: map[string]string{"app.kubernetes.io/managed-by": "mcpguard"}}}
			if s.Owners != nil {
				if sec.OwnerReferences, err = s.Owners(ctx); err != nil {
					return fmt.Errorf("creating secret %q: %w", s.Name, err)
				}
			}
		}
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		if err := fn(sec.Data); err != nil {
			if errors.Is(err, errNoChange) {
				return nil
			}
			return err
		}
		if create {
			_, err = s.Secrets.Create(ctx, sec, metav1.CreateOptions{})
		} else {
			_, err = s.Secrets.Update(ctx, sec, metav1.UpdateOptions{})
		}
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("writing secret %q: %w", s.Name, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

func (s *SecretStorage) data(ctx context.Context) (map[string][]byte, error) {
	sec, err := s.Secrets.Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading secret %q: %w", s.Name, err)
	}
	return sec.Data, nil
}

// Store writes value at key.
func (s *SecretStorage) Store(ctx context.Context, key string, value []byte) error {
	return s.update(ctx, func(d map[string][]byte) error {
		d[keyPrefix+encodeKey(key)] = value
		return nil
	})
}

// Load returns the value at key, or fs.ErrNotExist.
func (s *SecretStorage) Load(ctx context.Context, key string) ([]byte, error) {
	d, err := s.data(ctx)
	if err != nil {
		return nil, err
	}
	v, ok := d[keyPrefix+encodeKey(key)]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return v, nil
}

// Delete removes key and, if it is a directory, everything under it. A
// missing key is not an error.
func (s *SecretStorage) Delete(ctx context.Context, key string) error {
	return s.update(ctx, func(d map[string][]byte) error {
		n := len(d)
		for _, k := range s.keys(d) {
			if k == key || strings.HasPrefix(k, key+"/") {
				delete(d, keyPrefix+encodeKey(k))
			}
		}
		if len(d) == n {
			return errNoChange
		}
		return nil
	})
}

// Exists reports whether key is a file or a directory.
func (s *SecretStorage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// List returns the keys under path: all of them when recursive, else its
// direct children (files and directories).
func (s *SecretStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	d, err := s.data(ctx)
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(path, "/") + "/"
	if path == "" {
		prefix = ""
	}
	var out []string
	for _, k := range s.keys(d) {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if !recursive {
			first, _, _ := strings.Cut(rest, "/")
			k = prefix + first
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fs.ErrNotExist
	}
	slices.Sort(out)
	return out, nil
}

// Stat describes key. Modified is not tracked and is always zero: certmagic
// reads it only for ACME accounts, which this storage never holds.
func (s *SecretStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	d, err := s.data(ctx)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	if v, ok := d[keyPrefix+encodeKey(key)]; ok {
		return certmagic.KeyInfo{Key: key, Size: int64(len(v)), IsTerminal: true}, nil
	}
	for _, k := range s.keys(d) {
		if strings.HasPrefix(k, key+"/") {
			return certmagic.KeyInfo{Key: key}, nil
		}
	}
	return certmagic.KeyInfo{}, fs.ErrNotExist
}

func (s *SecretStorage) keys(d map[string][]byte) []string {
	var out []string
	for dk := range d {
		if enc, ok := strings.CutPrefix(dk, keyPrefix); ok {
			if k, err := decodeKey(enc); err == nil {
				out = append(out, k)
			}
		}
	}
	return out
}

// Lock takes the named lock, waiting while another holder has it.
func (s *SecretStorage) Lock(ctx context.Context, name string) error {
	poll := s.PollInterval
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// TryLock takes the named lock if nobody holds it, and reports whether it
// did.
func (s *SecretStorage) TryLock(ctx context.Context, name string) (bool, error) {
	ttl := s.LockTTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	token := randomToken()
	held := false
	err := s.update(ctx, func(d map[string][]byte) error {
		held = false
		var cur lockRecord
		if v, ok := d[lockPrefix+encodeKey(name)]; ok && json.Unmarshal(v, &cur) == nil && time.Now().Before(cur.Expires) {
			held = true
			return errNoChange
		}
		v, err := json.Marshal(lockRecord{Token: token, Expires: time.Now().Add(ttl)})
		if err != nil {
			return err
		}
		d[lockPrefix+encodeKey(name)] = v
		return nil
	})
	if err != nil || held {
		return false, err
	}
	s.mu.Lock()
	if s.tokens == nil {
		s.tokens = map[string]string{}
	}
	s.tokens[name] = token
	s.mu.Unlock()
	return true, nil
}

// Unlock releases a lock this storage took. A lock that expired and was
// taken by another holder is left alone.
func (s *SecretStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	token, ok := s.tokens[name]
	delete(s.tokens, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("unlock %q: not locked by this process", name)
	}
	return s.update(ctx, func(d map[string][]byte) error {
		var cur lockRecord
		v, ok := d[lockPrefix+encodeKey(name)]
		if !ok || json.Unmarshal(v, &cur) != nil || cur.Token != token {
			return errNoChange
		}
		delete(d, lockPrefix+encodeKey(name))
		return nil
	})
}

func randomToken() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func secretKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.'
}

func encodeKey(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case c == '_':
			b.WriteString("__")
		case c == '/':
			b.WriteString("_s")
		case secretKeyByte(c):
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_x%02x", c)
		}
	}
	return b.String()
}

func decodeKey(e string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(e); i++ {
		if e[i] != '_' {
			b.WriteByte(e[i])
			continue
		}
		if i+1 >= len(e) {
			return "", fmt.Errorf("bad key %q", e)
		}
		switch e[i+1] {
		case '_':
			b.WriteByte('_')
			i++
		case 's':
			b.WriteByte('/')
			i++
		case 'x':
			if i+4 > len(e) {
				return "", fmt.Errorf("bad key %q", e)
			}
			h, err := hex.DecodeString(e[i+2 : i+4])
			if err != nil {
				return "", fmt.Errorf("bad key %q", e)
			}
			b.WriteByte(h[0])
			i += 3
		default:
			return "", fmt.Errorf("bad key %q", e)
		}
	}
	return b.String(), nil
}
