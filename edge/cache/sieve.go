package cache

// sieve is the disk tier's index and eviction policy: SIEVE (Zhang et al.,
// NSDI '24), a FIFO queue with one "visited" bit per object and a hand that
// sweeps from the oldest end, sparing visited objects once. On skewed web
// traffic it keeps more hits than LRU, and a hit only sets a bit: no list
// moves, so lookups stay cheap under one lock.
//
// Nodes live in one slice linked by index, so an object costs the map slot
// plus one 32-byte node: the index of a million objects fits in ~50 MB.
// Not safe for concurrent use; the Disk's mutex guards it.
type sieve struct {
	nodes []sieveNode
	free  []int32 // unused slots in nodes
	index map[uint64]int32
	// head is the newest object, tail the oldest, hand the next eviction
	// candidate (nilNode: start again from tail).
	head, tail, hand int32
	bytes            int64
}

type sieveNode struct {
	hash       uint64
	size       int64
	prev, next int32 // prev points toward the tail (older), next toward the head
	visited    bool
}

const nilNode = -1

func newSieve() *sieve {
	return &sieve{index: make(map[uint64]int32), head: nilNode, tail: nilNode, hand: nilNode}
}

// len is the number of objects held.
func (s *sieve) len() int { return len(s.index) }

// touch marks hash as used; it reports whether hash is held.
func (s *sieve) touch(hash uint64) bool {
	i, ok := s.index[hash]
	if ok {
		s.nodes[i].visited = true
	}
	return ok
}

// size returns the bytes recorded for hash, or -1.
func (s *sieve) size(hash uint64) int64 {
	if i, ok := s.index[hash]; ok {
		return s.nodes[i].size
	}
	return -1
}

// insert adds hash as the newest object, or updates its size if held.
func (s *sieve) insert(hash uint64, size int64) {
	if i, ok := s.index[hash]; ok {
		s.bytes += size - s.nodes[i].size
		s.nodes[i].size = size
		return
	}
	var i int32
	if n := len(s.free); n > 0 {
		i, s.free = s.free[n-1], s.free[:n-1]
	} else {
		s.nodes = append(s.nodes, sieveNode{})
		i = int32(len(s.nodes) - 1)
	}
	s.nodes[i] = sieveNode{hash: hash, size: size, prev: s.head, next: nilNode}
	if s.head != nilNode {
		s.nodes[s.head].next = i
	}
	s.head = i
	if s.tail == nilNode {
		s.tail = i
	}
	s.index[hash] = i
	s.bytes += size
}

// remove drops hash; it reports whether it was held.
func (s *sieve) remove(hash uint64) bool {
	i, ok := s.index[hash]
	if !ok {
		return false
	}
	n := &s.nodes[i]
	if s.hand == i {
		s.hand = n.next
	}
	if n.prev != nilNode {
		s.nodes[n.prev].next = n.next
	} else {
		s.tail = n.next
	}
	if n.next != nilNode {
		s.nodes[n.next].prev = n.prev
	} else {
		s.head = n.prev
	}
	s.bytes -= n.size
	delete(s.index, hash)
	*n = sieveNode{}
	s.free = append(s.free, i)
	return true
}

// victim returns the object SIEVE evicts next, clearing the visited bits it
// passes; ok is false when the index is empty. The caller removes it.
func (s *sieve) victim() (hash uint64, ok bool) {
	if s.tail == nilNode {
		return 0, false
	}
	for {
		if s.hand == nilNode {
			s.hand = s.tail
		}
		n := &s.nodes[s.hand]
		if !n.visited {
			return n.hash, true
		}
		n.visited = false
		s.hand = n.next
	}
}

// each calls f for every object from oldest to newest.
func (s *sieve) each(f func(hash uint64, size int64)) {
	for i := s.tail; i != nilNode; i = s.nodes[i].next {
		f(s.nodes[i].hash, s.nodes[i].size)
	}
}
