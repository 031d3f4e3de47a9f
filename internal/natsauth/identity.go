package natsauth

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/jwt/v2"
)

// Identity reads which role and name a .creds file was minted for
// (`cdn control creds` writes them in the user JWT's name). Creds made
// elsewhere (not by an Authority) have an empty role.
func Identity(path string) (Role, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("read NATS creds: %w", err)
	}
	token, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return "", "", fmt.Errorf("NATS creds %s: %w", path, err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return "", "", fmt.Errorf("NATS creds %s: not a user's: %w", path, err)
	}
	role, name, _ := strings.Cut(uc.Name, "/")
	if uc.Name == "control-system" {
		return "", "", nil
	}
	return Role(role), name, nil
}

// CheckCreds refuses a creds file minted for another role or name than
// the process using it: an edge started with a copy of another edge's
// creds, or geodns with an edge's, would otherwise run with permissions
// that are not its own (and only fail later, on a refused write). Creds
// of unknown origin (an operator's own tooling) are let through.
func CheckCreds(path string, role Role, name string) error {
	got, gotName, err := Identity(path)
	if err != nil {
		return err
	}
	if got == "" {
		return nil
	}
	if got != role || gotName != name {
		want := string(role)
		if name != "" {
			want += " " + name
		}
		have := string(got)
		if gotName != "" {
			have += " " + gotName
		}
		mint := "cdn control creds --role " + string(role)
		if name != "" {
			mint += " --name " + name
		}
		return fmt.Errorf("NATS creds %s are for %s, not this %s: mint its own with `%s`", path, have, want, mint)
	}
	return nil
}
