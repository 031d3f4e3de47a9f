package natsauth

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// claimsUpdateSubject is where a system-account user sends an account
// JWT; every server of a cluster with the full resolver takes it.
const claimsUpdateSubject = "$SYS.REQ.CLAIMS.UPDATE"

// Configure sets opts so the server trusts only this authority: the
// operator, the system account, and the NATS-based "full" account
// resolver in resolverDir (what every node of a cluster shares; the
// memory resolver is for tests), preloaded with both accounts.
func (a *Authority) Configure(opts *server.Options, resolverDir string) error {
	opJWT, err := a.OperatorJWT()
	if err != nil {
		return err
	}
	oc, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		return fmt.Errorf("decode operator: %w", err)
	}
	res, err := server.NewDirAccResolver(resolverDir, 0, 2*time.Minute, server.NoDelete)
	if err != nil {
		return fmt.Errorf("account resolver in %s: %w", resolverDir, err)
	}
	accJWT, err := a.AccountJWT()
	if err != nil {
		return err
	}
	sysJWT, err := a.SystemAccountJWT()
	if err != nil {
		return err
	}
	// Store keeps the newer of what is there and this (by issue time),
	// so a revocation pushed while this node was down is not lost.
	for pub, token := range map[string]string{a.accountPub: accJWT, a.systemPub: sysJWT} {
		if err := res.Store(pub, token); err != nil {
			return fmt.Errorf("preload account %s: %w", pub, err)
		}
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{oc}
	opts.SystemAccount = a.systemPub
	opts.AccountResolver = res
	opts.MaxControlLine = MaxControlLine
	return nil
}

// MaxControlLine is the protocol line limit servers trusting the
// authority need: a user's JWT, with its role's exact subject list,
// travels in its CONNECT line and outgrows nats-server's 4 KiB default.
const MaxControlLine = 32 << 10

// Publish sends an account JWT to the servers over nc, a connection of
// a system-account user (SystemCreds), and waits for a server to accept
// it.
func Publish(ctx context.Context, nc *nats.Conn, accountJWT string) error {
	msg, err := nc.RequestWithContext(ctx, claimsUpdateSubject, []byte(accountJWT))
	if err != nil {
		return fmt.Errorf("send account claims: %w", err)
	}
	var res struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &res); err != nil {
		return fmt.Errorf("account claims update: unreadable answer %q", msg.Data)
	}
	if res.Error != nil {
		return fmt.Errorf("account claims update refused: %s (%d)", res.Error.Description, res.Error.Code)
	}
	return nil
}

// ServerConfig is a nats-server configuration block that makes an
// external server (or each node of a cluster) trust this authority, with
// its resolver in dir: what `cdn control nats-config` prints.
func (a *Authority) ServerConfig(dir string) (string, error) {
	opJWT, err := a.OperatorJWT()
	if err != nil {
		return "", err
	}
	accJWT, err := a.AccountJWT()
	if err != nil {
		return "", err
	}
	sysJWT, err := a.SystemAccountJWT()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Trust the CDN's operator; users come as .creds files from `cdn control creds`.\n")
	fmt.Fprintf(&b, "operator: %s\n", opJWT)
	fmt.Fprintf(&b, "system_account: %s\n", a.systemPub)
	fmt.Fprintf(&b, "# Users' JWTs carry their exact permissions and outgrow the 4 KiB default.\n")
	fmt.Fprintf(&b, "max_control_line: %d\n", MaxControlLine)
	fmt.Fprintf(&b, "resolver: {\n  type: full\n  dir: %q\n  allow_delete: false\n  interval: \"2m\"\n}\n", dir)
	fmt.Fprintf(&b, "resolver_preload: {\n  %s: %s\n  %s: %s\n}\n", a.accountPub, accJWT, a.systemPub, sysJWT)
	return b.String(), nil
}
