package api

import (
	"context"
	"errors"
	"net/http"
)

// EdgeCreds mints and revokes the NATS users of edges (control's
// natsauth authority, with the connection that tells the servers).
type EdgeCreds interface {
	// Creds returns a new .creds file for the edge named name, or an
	// error wrapping ErrBadEdgeName.
	Creds(name string) ([]byte, error)
	// Revoke revokes every user minted for the edge and has the servers
	// cut them off; it returns how many users it revoked.
	Revoke(ctx context.Context, name string) (int, error)
}

// ErrBadEdgeName is wrapped by EdgeCreds.Creds for a name that cannot
// name a NATS user.
var ErrBadEdgeName = errors.New("bad edge name")

// edgeCreds answers POST /v1/edges/{edge}/creds with a new .creds file
// for that edge (which need not be registered yet: this is how a new
// edge is provisioned).
func (a *API) edgeCreds(w http.ResponseWriter, r *http.Request) error {
	if a.Creds == nil {
		writeError(w, http.StatusNotImplemented, "no_nats_auth", "this control process mints no NATS credentials (it holds no authority seeds)")
		return nil
	}
	creds, err := a.Creds.Creds(r.PathValue("edge"))
	if errors.Is(err, ErrBadEdgeName) {
		writeError(w, http.StatusUnprocessableEntity, "invalid", err.Error())
		return nil
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(creds)
	return nil
}

// revokeEdgeUsers revokes the edge's NATS users, when control mints
// them: a forgotten edge must not keep its way into the state.
func (a *API) revokeEdgeUsers(ctx context.Context, name string) error {
	if a.Creds == nil {
		return nil
	}
	n, err := a.Creds.Revoke(ctx, name)
	if err != nil {
		return err
	}
	a.log.Info("edge's NATS users revoked", "edge", name, "users", n)
	return nil
}
