package natsauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"golang.org/x/sys/unix"

	"github.com/selfcdn/cdn/internal/atomicfile"
)

// The files of an Authority's directory.
const (
	operatorSeedFile = "operator.nk"
	accountSeedFile  = "account.nk"
	systemSeedFile   = "system.nk"
	// usersFile maps "role/name" to the public keys of the users minted
	// for it, so revoking an edge revokes every creds file it was given.
	usersFile = "users.json"
	// revokedFile maps revoked user keys to when they were revoked.
	revokedFile = "revoked.json"
)

// Authority holds the operator, account and system account keys, and
// mints and revokes users. Safe for concurrent use.
type Authority struct {
	dir                       string
	operator, account, system nkeys.KeyPair
	operatorPub, accountPub   string
	systemPub                 string

	// mu guards the users and revoked files, and the fields below, which
	// update reads afresh from them (revoked is read at Open too, for
	// the account JWT a server starts with).
	mu      sync.Mutex
	users   map[string][]string
	revoked map[string]int64
}

// Open loads the authority kept in dir, creating it (and dir, 0700) on
// first use. A seed file readable by others is refused: it would let
// anyone on the host mint users.
func Open(dir string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats auth dir: %w", err)
	}
	a := &Authority{dir: dir, users: map[string][]string{}, revoked: map[string]int64{}}
	var err error
	if a.operator, err = loadOrCreate(filepath.Join(dir, operatorSeedFile), nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if a.account, err = loadOrCreate(filepath.Join(dir, accountSeedFile), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.system, err = loadOrCreate(filepath.Join(dir, systemSeedFile), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	a.operatorPub, _ = a.operator.PublicKey()
	a.accountPub, _ = a.account.PublicKey()
	a.systemPub, _ = a.system.PublicKey()
	if err := readJSON(filepath.Join(dir, revokedFile), &a.revoked); err != nil {
		return nil, err
	}
	return a, nil
}

// loadOrCreate reads the seed at path, or makes one with create and
// writes it (0600, whole or not at all).
func loadOrCreate(path string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	seed, err := os.ReadFile(path)
	if err == nil {
		if err := CheckPrivate(path); err != nil {
			return nil, err
		}
		kp, err := nkeys.FromSeed(trimSpace(seed))
		if err != nil {
			return nil, fmt.Errorf("read seed %s: %w", path, err)
		}
		return kp, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	kp, err := create()
	if err != nil {
		return nil, fmt.Errorf("create key for %s: %w", path, err)
	}
	seed, _ = kp.Seed()
	if err := writePrivate(path, append(seed, '\n')); err != nil {
		return nil, err
	}
	return kp, nil
}

// CheckPrivate returns an error when the file at path can be read by
// users other than its owner.
func CheckPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is mode %04o: others can read it; chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	return nil
}

// writePrivate writes b to path, mode 0600, whole or not at all.
func writePrivate(path string, b []byte) error { return atomicfile.Write(path, b, 0o600) }

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// OperatorJWT is the operator's self-signed JWT, naming the system
// account; servers trust it.
func (a *Authority) OperatorJWT() (string, error) {
	oc := jwt.NewOperatorClaims(a.operatorPub)
	oc.Name = "cdn"
	oc.SystemAccount = a.systemPub
	return oc.Encode(a.operator)
}

// AccountJWT is the CDN account's JWT: JetStream enabled without limits
// of its own (the streams carry theirs), and the revocation list.
func (a *Authority) AccountJWT() (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accountJWTLocked()
}

func (a *Authority) accountJWTLocked() (string, error) {
	ac := jwt.NewAccountClaims(a.accountPub)
	ac.Name = "cdn"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	for pub, at := range a.revoked {
		ac.RevokeAt(pub, time.Unix(at, 0))
	}
	return ac.Encode(a.operator)
}

// SystemAccountJWT is the system account's JWT.
func (a *Authority) SystemAccountJWT() (string, error) {
	ac := jwt.NewAccountClaims(a.systemPub)
	ac.Name = "SYS"
	return ac.Encode(a.operator)
}

// CredsOptions shape a minted user.
type CredsOptions struct {
	// Expires, when set, ends the creds' validity.
	Expires time.Time
}

// Creds mints a user of role (named name: an edge's name; empty for the
// others) and returns its .creds file. Each call makes a new key, so
// creds handed out are told apart, and all of a name's are revoked by
// Revoke.
func (a *Authority) Creds(role Role, name string, opts CredsOptions) ([]byte, error) {
	if err := CheckName(role, name); err != nil {
		return nil, err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("mint %s user: %w", role, err)
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = userKey(role, name)
	if p := permissions(role, name); p != nil {
		uc.Permissions = *p
	}
	if !opts.Expires.IsZero() {
		uc.Expires = opts.Expires.Unix()
	}
	token, err := uc.Encode(a.account)
	if err != nil {
		return nil, fmt.Errorf("sign %s user: %w", role, err)
	}
	seed, _ := kp.Seed()
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		return nil, fmt.Errorf("format %s creds: %w", role, err)
	}
	err = a.update(func() error {
		k := userKey(role, name)
		a.users[k] = append(a.users[k], pub)
		return a.saveLocked(usersFile, a.users)
	})
	if err != nil {
		return nil, err
	}
	return creds, nil
}

// SystemCreds mints a user of the system account that may send account
// claim updates (how control pushes a revocation to every server).
func (a *Authority) SystemCreds() ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("mint system user: %w", err)
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = "control-system"
	uc.Permissions.Pub.Allow.Add(claimsUpdateSubject)
	uc.Permissions.Sub.Allow.Add("_INBOX.>")
	token, err := uc.Encode(a.system)
	if err != nil {
		return nil, fmt.Errorf("sign system user: %w", err)
	}
	seed, _ := kp.Seed()
	return jwt.FormatUserConfig(token, seed)
}

// Revoke revokes every user minted for role and name, and returns the
// account JWT that says so, for the servers (see Publish). Revoking a
// name with no users is not an error: there is nothing left to cut.
func (a *Authority) Revoke(role Role, name string) (accountJWT string, revoked int, err error) {
	err = a.update(func() error {
		now := time.Now().Unix()
		for _, pub := range a.users[userKey(role, name)] {
			if _, ok := a.revoked[pub]; !ok {
				a.revoked[pub] = now
				revoked++
			}
		}
		if revoked > 0 {
			if err := a.saveLocked(revokedFile, a.revoked); err != nil {
				return err
			}
		}
		accountJWT, err = a.accountJWTLocked()
		return err
	})
	return accountJWT, revoked, err
}

// update runs f with the users and revoked files read afresh, under a
// lock on the directory: `cdn control creds` may mint while control
// runs, and neither may drop what the other wrote.
func (a *Authority) update(f func() error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	lock, err := os.OpenFile(filepath.Join(a.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock nats auth dir: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock nats auth dir: %w", err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	users, revoked := map[string][]string{}, map[string]int64{}
	if err := readJSON(filepath.Join(a.dir, usersFile), &users); err != nil {
		return err
	}
	if err := readJSON(filepath.Join(a.dir, revokedFile), &revoked); err != nil {
		return err
	}
	a.users, a.revoked = users, revoked
	return f()
}

func userKey(role Role, name string) string {
	if name == "" {
		return string(role)
	}
	return string(role) + "/" + name
}

func (a *Authority) saveLocked(file string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writePrivate(filepath.Join(a.dir, file), b)
}

// WriteCreds writes a .creds file (mode 0600, whole or not at all).
func WriteCreds(path string, creds []byte) error { return writePrivate(path, creds) }
