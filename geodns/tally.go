package geodns

import "time"

// workerState is what one UDP worker keeps between packets: where its
// last clients are, and the counts of the batch in hand. Not safe for
// concurrent use.
type workerState struct {
	places placeMemo
	tally  tally
	n      uint64 // queries numbered, for sampling (see begin)
}

// tally counts a batch's cached answers, to be added to the shared
// series once per batch (Server.flush) instead of once per query: each
// series is an atomic that every worker's core would otherwise pull into
// its cache, and find gone after the kernel's turn, for every answer.
type tally struct {
	hits, ecs uint64
	answers   []answerTally // one per cached answer the batch used
}

type answerTally struct {
	e *cachedAnswer
	n uint64
}

// add counts one answer sent from e (hits counts every use of the
// cache, sent or not); ecs says the query carried a subnet.
func (t *tally) add(e *cachedAnswer, ecs bool) {
	if ecs {
		t.ecs++
	}
	for i := range t.answers {
		if t.answers[i].e == e {
			t.answers[i].n++
			return
		}
	}
	t.answers = append(t.answers, answerTally{e, 1})
}

// begin numbers a query of the worker and starts its clock when it is
// one of the sampled, as Server.begin does for the rest.
func (w *workerState) begin() (n uint64, start time.Time) {
	w.n++
	return w.n, sampleStart(w.n)
}

// flush adds w's tally to the metrics and empties it.
func (s *Server) flush(w *workerState) {
	t := &w.tally
	if t.hits == 0 {
		return
	}
	s.metrics.cacheHit.Add(float64(t.hits))
	if t.ecs > 0 {
		s.metrics.ecs.Add(float64(t.ecs))
	}
	for i, a := range t.answers {
		s.countAnswers(a.e.res, a.e.counters, a.n)
		t.answers[i] = answerTally{} // hold no answer past its batch
	}
	t.hits, t.ecs, t.answers = 0, 0, t.answers[:0]
}
