package policies

import "sync"

// prefixMaps recycles the maps that hold a request's classification
// (input.request.prefixes). A map lives only while one decision is made:
// the memo key and the evaluated input copy its contents, and no Decision
// refers to it, so DecideMemo hands it back when it returns.
var prefixMaps = sync.Pool{New: func() any { return make(map[string]string, 2) }}

// maxPooledPrefixes bounds what a recycled map may hold; a larger one (a
// path under very many of the data's prefixes) is left to the collector.
const maxPooledPrefixes = 16

func getPrefixMap() map[string]string { return prefixMaps.Get().(map[string]string) }

func putPrefixMap(m map[string]string) {
	if len(m) > maxPooledPrefixes {
		return
	}
	clear(m)
	prefixMaps.Put(m)
}
