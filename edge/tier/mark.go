package tier

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Stage is why a peer was asked.
type Stage uint8

// The stages. A request from a client is StageNone.
const (
	StageNone Stage = iota
	// StageHome asks the key's home in the sender's region.
	StageHome
	// StageShield asks the key's home in the site's shield region.
	StageShield
)

func (s Stage) String() string {
	switch s {
	case StageHome:
		return "home"
	case StageShield:
		return "shield"
	}
	return "none"
}

func parseStage(s string) Stage {
	switch s {
	case "home":
		return StageHome
	case "shield":
		return StageShield
	}
	return StageNone
}

// PeerHeader is the edge-to-edge mark: "from stage epoch unix-time sig".
const PeerHeader = "Cdn-Peer"

// PurgesHeader rides beside a mark with the last purge version the
// asking edge applied. A peer that applied fewer must not answer from
// its cache: the asker would store, stamped after the purge, what the
// purge removed, and serve it until it expires.
const PurgesHeader = "Cdn-Peer-Purges"

// LoopHeader is RFC 8586's loop-detection field.
const LoopHeader = "Cdn-Loop"

// MaxSkew is how far a mark's time may be from the receiver's clock.
// Regions' clocks drift; a replayed mark can only fetch the same
// cacheable URL again within it.
const MaxSkew = time.Minute

// Mark is a verified CDN-Peer field.
type Mark struct {
	From  string
	Stage Stage
	Epoch uint64
	// Purges is the purge version the asker had applied (PurgesHeader);
	// 0 from an edge that does not say.
	Purges uint64
}

// sign is the mark's MAC over the mark and the request it travels on.
func sign(secret []byte, from string, stage Stage, epoch uint64, unix int64, host, uri string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("cdn-peer v1\n" + from + "\n" + stage.String() + "\n" +
		strconv.FormatUint(epoch, 16) + "\n" + strconv.FormatInt(unix, 10) + "\n" + host + "\n" + uri))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// markValue is the CDN-Peer field for a request to host and uri.
func markValue(secret []byte, from string, stage Stage, epoch uint64, now time.Time, host, uri string) string {
	unix := now.Unix()
	return from + " " + stage.String() + " " + strconv.FormatUint(epoch, 16) + " " + strconv.FormatInt(unix, 10) + " " +
		sign(secret, from, stage, epoch, unix, host, uri)
}

// verifyMark checks a CDN-Peer field against the request it came on.
// Anything malformed, unsigned, signed with another secret or for
// another request, or too far in time is not a mark.
func verifyMark(secret []byte, value string, now time.Time, host, uri string) (Mark, bool) {
	if len(secret) == 0 || len(value) > 512 {
		return Mark{}, false
	}
	f := strings.Fields(value)
	if len(f) != 5 {
		return Mark{}, false
	}
	stage := parseStage(f[1])
	epoch, err1 := strconv.ParseUint(f[2], 16, 64)
	unix, err2 := strconv.ParseInt(f[3], 10, 64)
	if stage == StageNone || err1 != nil || err2 != nil || f[0] == "" {
		return Mark{}, false
	}
	if d := now.Sub(time.Unix(unix, 0)); d > MaxSkew || d < -MaxSkew {
		return Mark{}, false
	}
	want := sign(secret, f[0], stage, epoch, unix, host, uri)
	if !hmac.Equal([]byte(want), []byte(f[4])) {
		return Mark{}, false
	}
	return Mark{From: f[0], Stage: stage, Epoch: epoch}, true
}

// LoopCount counts the elements of the CDN-Loop fields naming name
// (RFC 8586: a list of "cdn-id *( OWS ; OWS parameter )").
func LoopCount(values []string, name string) int {
	n := 0
	for _, v := range values {
		for elem := range strings.SplitSeq(v, ",") {
			id, _, _ := strings.Cut(elem, ";")
			if strings.EqualFold(strings.TrimSpace(id), name) {
				n++
			}
		}
	}
	return n
}
