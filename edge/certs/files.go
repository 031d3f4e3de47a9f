package certs

import (
	"context"
	"fmt"
	"os"
	"time"
)

// fileCert is an operator's certificate as loaded into the cache.
type fileCert struct {
	certFile, keyFile string
	hash              string // the cache's handle on it
	stamp             fileStamp
}

// fileStamp tells whether either file changed since it was read.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func stampOf(certFile, keyFile string) (fileStamp, error) {
	c, err := os.Stat(certFile)
	if err != nil {
		return fileStamp{}, err
	}
	k, err := os.Stat(keyFile)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// loadFiles caches site s's certificate files unless the same files are
// cached unchanged. A bad pair leaves the one cached before in place.
func (m *Manager) loadFiles(ctx context.Context, s Site) error {
	if s.CertFile == "" || s.KeyFile == "" {
		return fmt.Errorf("tls files: cert_file and key_file are required")
	}
	old := m.fileCerts[s.Name]
	stamp, err := stampOf(s.CertFile, s.KeyFile)
	if err != nil {
		return fmt.Errorf("tls files: %w", err)
	}
	if old != nil && old.certFile == s.CertFile && old.keyFile == s.KeyFile && old.stamp == stamp {
		return nil
	}
	hash, err := m.files.CacheUnmanagedCertificatePEMFile(ctx, s.CertFile, s.KeyFile, []string{s.Name})
	if err != nil {
		return fmt.Errorf("tls files %s, %s: %w", s.CertFile, s.KeyFile, err)
	}
	if old != nil && old.hash != hash {
		m.caches[Files].Remove([]string{old.hash})
	}
	m.fileCerts[s.Name] = &fileCert{certFile: s.CertFile, keyFile: s.KeyFile, hash: hash, stamp: stamp}
	return nil
}

// dropFiles forgets the file certificates of sites no longer in Files mode.
func (m *Manager) dropFiles(sites []Site) {
	keep := map[string]bool{}
	for _, s := range sites {
		if s.Mode == Files {
			keep[s.Name] = true
		}
	}
	for name, fc := range m.fileCerts {
		if !keep[name] {
			m.caches[Files].Remove([]string{fc.hash})
			delete(m.fileCerts, name)
		}
	}
}

// reloadFiles reloads the certificate files that changed on disk.
func (m *Manager) reloadFiles(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, fc := range m.fileCerts {
		err := m.loadFiles(ctx, Site{Name: name, Mode: Files, CertFile: fc.certFile, KeyFile: fc.keyFile})
		if err != nil {
			m.log.Warn("certificate files not reloaded; serving the ones loaded before", "site", name, "err", err)
			continue
		}
		if m.fileCerts[name] != fc {
			m.log.Info("certificate files reloaded", "site", name, "cert_file", fc.certFile)
		}
	}
}
