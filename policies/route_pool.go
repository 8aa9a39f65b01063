package policies

import "sync"

// classifyScratch is what classifying a request for one decision needs:
// the map that holds input.request.prefixes, room for its
// own_site_prefixes, and the copies of the facts whose ids are cleared
// (spareFacts). It lives only while one decision is made: the memo key and
// the evaluated input copy what they need, and no Decision refers to it,
// so DecideMemo hands it back when it returns. It is pooled, not on
// DecideMemo's stack: the classified input points into it, and the
// evaluator's conversion of that input would move it to the heap.
type classifyScratch struct {
	prefixes map[string]string
	own      [2]string
	spare    spareFacts
	// enc is where the input's parts are encoded to look them up in the
	// cache of converted parts (input_cache.go).
	enc []byte
}

var classifyScratches = sync.Pool{New: func() any {
	return &classifyScratch{prefixes: make(map[string]string, 2), enc: make([]byte, 0, 256)}
}}

// maxPooledPrefixes bounds what a recycled map may hold; a larger one (a
// path under very many of the data's prefixes) is left to the collector.
const maxPooledPrefixes = 16

// maxPooledEnc bounds the encoding buffer a recycled scratch keeps.
const maxPooledEnc = 4096

func getClassifyScratch() *classifyScratch {
	return classifyScratches.Get().(*classifyScratch)
}

func putClassifyScratch(s *classifyScratch) {
	if len(s.prefixes) > maxPooledPrefixes {
		s.prefixes = make(map[string]string, 2)
	} else {
		clear(s.prefixes)
	}
	s.own = [2]string{}
	if cap(s.enc) > maxPooledEnc {
		s.enc = make([]byte, 0, 256)
	}
	s.spare = spareFacts{}
	classifyScratches.Put(s)
}
