package fill

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/freshness"
)

// Head is the part of a fetched response every waiter needs before the body.
type Head struct {
	// Status and Header are as they will be sent to clients.
	Status int
	Header http.Header
	// Shareable says the response may go to every waiter; when false only
	// the request that started the flight may use it and the others fetch
	// on their own.
	Shareable bool
	// Decision is the storability verdict behind Shareable.
	Decision freshness.Decision
	// Vary are the request header names the response varies on, and
	// VariantKey the variant the fetching request selected.
	Vary       []string
	VariantKey string
	// FromCache is set when the head is a stored entry answering for a
	// failed origin (stale-if-error) or refreshed by a 304.
	FromCache bool
	// Revalidated is set when the origin answered 304 to our validation.
	Revalidated bool
	// Upstream is the Cache-Status of the peer edge that answered (RFC
	// 9211 lists the caches from the origin's side), "" from an origin.
	Upstream string
	// NotKept says the response is shared with the flight's waiters but
	// not stored here (a peer's answer for a key that is not hot).
	NotKept bool
	// Tags are the response's purge tags, which Header does not carry
	// (clients do not get them; an edge asking as a peer does).
	Tags []string
	// Entry is the stored entry a FromCache head comes from, when its body
	// is in memory (immutable, so any waiter may serve it as a hit is
	// served: compressed copies, validators, ranges). Nil otherwise, and
	// for a body on disk, whose handle the fetch releases.
	Entry *cache.Entry
}

// Flight is one fetch in progress. Its Head is published once; its Body
// fills while readers follow it.
type Flight struct {
	ready chan struct{} // closed once head or err is set
	head  Head
	err   error
	Body  *Body

	// imu guards interims and more: the origin's 1xx responses before
	// the head, which waiters pass on as they come.
	imu      sync.Mutex
	interims []Interim
	more     chan struct{} // closed (and replaced) when one is added
}

// Interim is an informational (1xx) response the origin sent before its
// final one: 103 Early Hints, 102 Processing. Never stored.
type Interim struct {
	Status int
	Header http.Header
}

// maxInterims bounds the 1xx responses one flight keeps for its waiters.
const maxInterims = 8

// AddInterim passes an informational response on to the flight's
// waiters; past maxInterims they are dropped.
func (f *Flight) AddInterim(i Interim) {
	f.imu.Lock()
	defer f.imu.Unlock()
	if len(f.interims) >= maxInterims {
		return
	}
	f.interims = append(f.interims, i)
	if f.more != nil {
		close(f.more)
	}
	f.more = make(chan struct{})
}

// WaitInterim is Wait that also calls onInterim, in the waiter's own
// goroutine, with each informational response before the head.
func (f *Flight) WaitInterim(ctx context.Context, onInterim func(Interim)) (Head, error) {
	seen := 0
	for {
		f.imu.Lock()
		pending := f.interims[seen:]
		seen = len(f.interims)
		if f.more == nil {
			f.more = make(chan struct{})
		}
		more := f.more
		f.imu.Unlock()
		for _, i := range pending {
			onInterim(i)
		}
		select {
		case <-f.ready:
			// Those that came just before the head go first.
			f.imu.Lock()
			pending = f.interims[seen:]
			f.imu.Unlock()
			for _, i := range pending {
				onInterim(i)
			}
			return f.head, f.err
		case <-more:
		case <-ctx.Done():
			return Head{}, ctx.Err()
		}
	}
}

// Publish makes the head visible to every waiter. Call it once, before the
// body is written.
func (f *Flight) Publish(h Head) {
	f.head = h
	close(f.ready)
}

// Fail ends a flight that produced no head.
func (f *Flight) Fail(err error) {
	f.err = err
	f.Body.Finish(err)
	close(f.ready)
}

// Wait blocks until the head is known or ctx is done.
func (f *Flight) Wait(ctx context.Context) (Head, error) {
	select {
	case <-f.ready:
		return f.head, f.err
	case <-ctx.Done():
		return Head{}, ctx.Err()
	}
}

// Group tracks the flights in progress by key. The zero value is not
// usable; call NewGroup.
type Group struct {
	newBody func() *Body
	mu      sync.Mutex // protects flights
	flights map[string]*Flight
}

// NewGroup returns an empty group whose flights get bodies from newBody.
func NewGroup(newBody func() *Body) *Group {
	return &Group{newBody: newBody, flights: make(map[string]*Flight)}
}

// Join returns the flight for key, starting one when none runs. leader is
// true for the caller that must run the fetch and then call Done. The caller
// holds a reader's reference on f.Body and must Release it.
func (g *Group) Join(key string) (f *Flight, leader bool) {
	f, leader, _ = g.JoinUnless(key, nil)
	return f, leader
}

// JoinUnless is Join, but when no flight runs for key it first asks
// stored (if not nil) whether the key was stored meanwhile, and if so
// returns stored true and no flight. The question is asked under the
// group's lock: a fill stores before it leaves the group (Done), so a
// request that missed the cache just before a fill ended finds either
// the flight or the stored entry, never neither.
func (g *Group) JoinUnless(key string, stored func() bool) (f *Flight, leader, isStored bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.flights[key]; ok {
		// Acquired under mu: Done also takes mu, so the writer cannot drop
		// the last reference between our lookup and our Acquire.
		f.Body.Acquire()
		return f, false, false
	}
	if stored != nil && stored() {
		return nil, false, true
	}
	f = g.Solo()
	g.flights[key] = f
	return f, true, false
}

// Solo returns a flight that no one else can join, for requests that must
// not share a response (an Authorization header, a hit-for-miss URL). As
// with Join, the caller holds a reader's reference on its Body; the fetch
// that runs the flight owns the writer's reference.
func (g *Group) Solo() *Flight {
	f := &Flight{ready: make(chan struct{}), Body: g.newBody()}
	f.Body.Acquire()
	return f
}

// Done removes f from the group, if it is still the flight for key. Callers
// store the response first, so the next request finds it in the cache, and
// release the writer's reference on f.Body after Done.
func (g *Group) Done(key string, f *Flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.flights[key] == f {
		delete(g.flights, key)
	}
}

// Forget takes out of the group the flight for key and every flight whose
// key starts with prefix: the URL changed, and requests from now on must
// not join a fetch that began before. The flights themselves run on.
func (g *Group) Forget(key, prefix string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.flights {
		if k == key || strings.HasPrefix(k, prefix) {
			delete(g.flights, k)
		}
	}
}
