package dashboard

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// A session lives in its cookie, sealed (AES-256-GCM) with a key kept in
// control's data dir: a restarted control process still knows its
// sessions, so a page open across a restart recovers without signing in
// again. The cookie holds the API token the operator signed in with;
// every request is checked with that token again, so revoking it ends
// its sessions at once.

// cookieName is the session cookie.
const cookieName = "cdn_session"

// KeyFile is the session sealing key, under control's data dir (0600).
const KeyFile = "dashboard.key"

// session is what a cookie carries.
type session struct {
	Token string `json:"t"`
	// CSRF is the value every action must carry in its X-CSRF-Token
	// header: a page of ours reads it from /dashboard/session, another
	// site's page cannot.
	CSRF    string    `json:"c"`
	Expires time.Time `json:"e"`
}

// sealer seals and opens session cookies.
type sealer struct{ aead cipher.AEAD }

// loadKey reads the sealing key from dir, making one on first use.
func loadKey(dir string) (*sealer, error) {
	path := filepath.Join(dir, KeyFile)
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		rand.Read(key)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("dashboard key: %w", err)
		}
		if err := os.WriteFile(path, key, 0o600); err != nil {
			return nil, fmt.Errorf("dashboard key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("dashboard key: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("dashboard key %s: %d bytes, want 32", path, len(key))
	}
	return newSealer(key)
}

func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("dashboard key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("dashboard key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal turns s into a cookie value.
func (k *sealer) seal(s session) string {
	plain, _ := json.Marshal(s)
	nonce := make([]byte, k.aead.NonceSize())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(k.aead.Seal(nonce, nonce, plain, []byte(cookieName)))
}

// Why a cookie does not open.
var (
	errNoSession      = errors.New("not signed in")
	errSessionExpired = errors.New("session expired: sign in again")
)

// open returns the session in a cookie value sealed by seal, if it has
// not expired by now.
func (k *sealer) open(value string, now time.Time) (session, error) {
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(b) < k.aead.NonceSize() {
		return session{}, errNoSession
	}
	plain, err := k.aead.Open(nil, b[:k.aead.NonceSize()], b[k.aead.NonceSize():], []byte(cookieName))
	if err != nil {
		return session{}, errNoSession
	}
	var s session
	if err := json.Unmarshal(plain, &s); err != nil || s.Token == "" || s.CSRF == "" {
		return session{}, errNoSession
	}
	if !now.Before(s.Expires) {
		return session{}, errSessionExpired
	}
	return s, nil
}

// cookie is the Set-Cookie for s: HttpOnly (no script reads it),
// SameSite=Strict (no other site's page sends it), Secure over HTTPS,
// and expiring with the session.
func cookie(value string, expires time.Time, secure bool) *http.Cookie {
	c := &http.Cookie{Name: cookieName, Value: value, Path: "/dashboard/", HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteStrictMode, Expires: expires}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(time.Until(expires).Seconds())
	}
	return c
}

// checkCSRF reports whether an action carries its session's CSRF value
// and, when the browser says where it comes from, comes from this host.
func checkCSRF(r *http.Request, s session) bool {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF)) != 1 {
		return false
	}
	return sameOrigin(r)
}

// sameOrigin is false for a request whose Origin header names another
// site (browsers send it with every POST).
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return r.Header.Get("Sec-Fetch-Site") == "" || r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return origin == scheme+"://"+r.Host
}

// randomText is a 26-character secret.
func randomText() string { return rand.Text() }
