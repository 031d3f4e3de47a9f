package fill

import (
	"context"
	"net/http"
	"strings"
	"sync"

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
}

// Flight is one fetch in progress. Its Head is published once; its Body
// fills while readers follow it.
type Flight struct {
	ready chan struct{} // closed once head or err is set
	head  Head
	err   error
	Body  *Body
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
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.flights[key]; ok {
		// Acquired under mu: Done also takes mu, so the writer cannot drop
		// the last reference between our lookup and our Acquire.
		f.Body.Acquire()
		return f, false
	}
	f = g.Solo()
	g.flights[key] = f
	return f, true
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
