package main

import (
	"bytes"
	"runtime"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func socketPeer(addr string, port uint32) *authv3.AttributeContext_Peer {
	return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}}
}

// envoyCheckRequest is what Envoy's ext_authz filter sends for a request
// (headers as a map, or as header_map with encode_raw_headers), with the
// empty metadata it sends when no namespaces are configured.
func envoyCheckRequest(headerMap bool) *authv3.CheckRequest {
	dst := socketPeer("10.0.0.2", 8443)
	dst.Principal = "spiffe://cluster.local/ns/api/sa/gw"
	http := &authv3.AttributeContext_HttpRequest{
		Id: "8d3f5b7e-0d2a-4c5e-9b1e-3c1f8a9e2b4d", Method: "POST", Path: "/v1/audio/generate?x=1",
		Host: "api.example.com", Scheme: "https", Protocol: "HTTP/2", Size: 512, Query: "x=1",
	}
	hdrs := map[string]string{":authority": "api.example.com", ":method": "POST", ":path": "/v1/audio/generate?x=1",
		"authorization": "Bearer kg_live_abcdefghijklmnopqrstuvwxyz0123456789", "x-request-id": http.Id,
		"user-agent": "curl/8.5.0", "origin": "https://app.example.com", "content-type": "application/json"}
	if headerMap {
		http.HeaderMap = &corev3.HeaderMap{}
		for k, v := range hdrs {
			http.HeaderMap.Headers = append(http.HeaderMap.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
		}
	} else {
		http.Headers = hdrs
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:            socketPeer("203.0.113.9", 52114),
		Destination:       dst,
		Request:           &authv3.AttributeContext_Request{Time: &timestamppb.Timestamp{Seconds: 1764558000, Nanos: 123456789}, Http: http},
		ContextExtensions: map[string]string{"site": "site_1", "route": "audio"},
		MetadataContext:   &corev3.Metadata{},
		TlsSession:        &authv3.AttributeContext_TLSSession{Sni: "api.example.com"},
	}}
}

// decodeSeeds are encodings of realistic requests, and of what a fuzzer
// finds slowly: repeated fields (merged sub-messages, the other oneof
// member), map entries missing a key or value, a wrong wire type, an
// unknown field, metadata, invalid UTF-8, truncated input, huge lengths.
func decodeSeeds() [][]byte {
	enc := func(m proto.Message) []byte { b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m); return b }
	full, raw := enc(envoyCheckRequest(false)), enc(envoyCheckRequest(true))
	pipe := enc(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{
		Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/envoy.sock", Mode: 0o600}}}}}})
	named := enc(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Protocol: corev3.SocketAddress_UDP, PortSpecifier: &corev3.SocketAddress_NamedPort{NamedPort: "https"}, Ipv4Compat: true}}}}}})
	meta := envoyCheckRequest(false)
	meta.Attributes.MetadataContext.FilterMetadata = map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": {}}
	invalid := bytes.Replace(bytes.Clone(full), []byte("curl/8.5.0"), []byte("curl/8.5\xff0"), 1)
	// field 1 (attributes), field 4 (request), field 2 (http), field 3 (headers) entry with only a value.
	valueOnly := protowire.AppendTag(nil, 2, protowire.BytesType)
	valueOnly = protowire.AppendString(valueOnly, "v")
	nest := func(num protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	entry := nest(1, nest(4, nest(2, nest(3, valueOnly))))
	wrongType := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 7)
	unknown := append(bytes.Clone(full), protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1)...)
	huge := append(protowire.AppendTag(nil, 1, protowire.BytesType), 0xff, 0xff, 0xff, 0xff, 0x0f)
	return [][]byte{nil, full, raw, pipe, named, enc(meta), invalid, entry, wrongType, unknown, huge,
		append(bytes.Clone(full), raw...), append(bytes.Clone(pipe), named...), append(bytes.Clone(named), pipe...),
		append(bytes.Clone(full), full...), full[:len(full)/2], full[:len(full)-1], nest(1, nil), {0},
		// a socket address after the other member replaced the first one
		// (the peer's part is taken: a new one, empty); a port after a
		// named port and again; header_map twice.
		slices.Concat(named, pipe, named), slices.Concat(full, named, full), slices.Concat(raw, raw)}
}

// checkDecode: decodeCheckRequest either leaves b to proto.Unmarshal or
// decodes what proto.Unmarshal decodes, and the server's codec agrees with
// proto.Unmarshal (both error, or equal messages).
func checkDecode(t *testing.T, b []byte) (fast bool) {
	want := &authv3.CheckRequest{}
	wantErr := proto.Unmarshal(b, want)
	got := &authv3.CheckRequest{}
	if fast = decodeCheckRequest(b, got); fast && (wantErr != nil || !proto.Equal(got, want) || !sameNilBytes(got, want)) {
		t.Fatalf("decoded %x as\n%v\nproto.Unmarshal: %v\n%v", b, got, wantErr, want)
	}
	got = &authv3.CheckRequest{Attributes: &authv3.AttributeContext{TlsSession: &authv3.AttributeContext_TLSSession{Sni: "left over"}}}
	err := vtCodec{proto: encoding.GetCodecV2("proto")}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got)
	if (err != nil) != (wantErr != nil) || (err == nil && !proto.Equal(got, want)) {
		t.Fatalf("codec decoded %x as\n%v (%v)\nproto.Unmarshal: %v\n%v", b, got, err, wantErr, want)
	}
	return fast
}

// sameNilBytes: the bytes fields are nil in got where they are in want
// (proto.Equal takes an empty slice for nil).
func sameNilBytes(got, want *authv3.CheckRequest) bool {
	g, w := got.GetAttributes().GetRequest().GetHttp(), want.GetAttributes().GetRequest().GetHttp()
	if (g.GetRawBody() == nil) != (w.GetRawBody() == nil) {
		return false
	}
	gh, wh := g.GetHeaderMap().GetHeaders(), w.GetHeaderMap().GetHeaders()
	for i := range min(len(gh), len(wh)) {
		if (gh[i].GetRawValue() == nil) != (wh[i].GetRawValue() == nil) {
			return false
		}
	}
	return true
}

// TestDecodeCheckRequestEmptyBytes: an empty raw_value or raw_body decodes
// as nil, as proto.Unmarshal leaves it.
func TestDecodeCheckRequestEmptyBytes(t *testing.T) {
	m := envoyCheckRequest(true)
	m.Attributes.Request.Http.HeaderMap.Headers[0].RawValue = nil
	b, _ := proto.Marshal(m)
	hv := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "x-empty")
	hv = protowire.AppendBytes(protowire.AppendTag(hv, 3, protowire.BytesType), nil) // raw_value, present and empty
	hm := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), hv)
	http := protowire.AppendBytes(protowire.AppendTag(nil, 13, protowire.BytesType), hm)  // header_map
	http = protowire.AppendBytes(protowire.AppendTag(http, 12, protowire.BytesType), nil) // raw_body, present and empty
	req := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), http)
	attrs := protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), req)
	b = append(b, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), attrs)...)
	if !checkDecode(t, b) {
		t.Fatal("fell back to proto.Unmarshal")
	}
}

// TestDecodeCheckRequest: Envoy's requests take the fast path and decode
// as proto.Unmarshal does; what it does not handle falls back.
func TestDecodeCheckRequest(t *testing.T) {
	seeds := decodeSeeds()
	for i, b := range seeds {
		fast := checkDecode(t, b)
		if i <= 4 && !fast {
			t.Errorf("seed %d: Envoy's request fell back to proto.Unmarshal", i)
		}
	}
	for _, i := range []int{5, 6, 8, 9, 10} { // metadata, invalid UTF-8, wrong wire type, unknown field, huge length
		if decodeCheckRequest(seeds[i], &authv3.CheckRequest{}) {
			t.Errorf("seed %d decoded, want a fall back", i)
		}
	}
}

// TestDecodeCheckRequestCopies: nothing decoded points into the input,
// which the codec returns to gRPC's buffer pool once decoded.
func TestDecodeCheckRequestCopies(t *testing.T) {
	for _, headerMap := range []bool{false, true} {
		want := envoyCheckRequest(headerMap)
		want.Attributes.Request.Http.RawBody = []byte("raw")
		b, _ := proto.Marshal(want)
		got := &authv3.CheckRequest{}
		if !decodeCheckRequest(b, got) {
			t.Fatal("fell back")
		}
		clear(b)
		if !proto.Equal(got, want) {
			t.Errorf("after the input was overwritten:\n%v\nwant\n%v", got, want)
		}
	}
}

// FuzzDecodeCheckRequest is the differential test: go test -fuzz
// FuzzDecodeCheckRequest ./cmd/keygate.
func FuzzDecodeCheckRequest(f *testing.F) {
	for _, b := range decodeSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

// TestDecodeCheckRequestAllocs: Envoy's request decodes in fewer
// allocations than proto.Unmarshal's, its messages (and raw headers)
// allocated together: what is left is the strings the request does not
// share with every other, its maps and the request itself (24 and 26;
// 39 and 52 with an allocation per message).
func TestDecodeCheckRequestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	for _, headerMap := range []bool{false, true} {
		b, _ := proto.Marshal(envoyCheckRequest(headerMap))
		fast := testing.AllocsPerRun(50, func() { decodeCheckRequest(b, &authv3.CheckRequest{}) })
		slow := testing.AllocsPerRun(50, func() { _ = proto.Unmarshal(b, &authv3.CheckRequest{}) })
		if fast >= slow || fast > 28 {
			t.Errorf("header_map %v: decodeCheckRequest %v allocs (want ≤ 28), proto.Unmarshal %v", headerMap, fast, slow)
		}
	}
}

// BenchmarkDecodeCheckRequest: the server's codec against gRPC's proto
// codec on Envoy's request.
func BenchmarkDecodeCheckRequest(b *testing.B) {
	data, _ := proto.Marshal(envoyCheckRequest(false))
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"serve", vtCodec{proto: encoding.GetCodecV2("proto")}}, {"proto", encoding.GetCodecV2("proto")}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, &authv3.CheckRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDecodeReservesOnlyWhatDecodes: the decoder sizes the headers map and
// the header_map list from counts it takes before decoding. Two million
// empty map entries (one key, "") or header_map entries of the wrong wire
// type must not reserve memory for two million headers.
func TestDecodeReservesOnlyWhatDecodes(t *testing.T) {
	wrap := func(num protowire.Number, inner []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), inner)
	}
	request := func(http []byte) []byte { return wrap(1, wrap(4, wrap(2, http))) }
	const n = 1 << 20
	emptyEntries := bytes.Repeat([]byte{0x1a, 0x00}, n)            // headers: map entry "" → ""
	varintHeaders := wrap(13, bytes.Repeat([]byte{0x08, 0x00}, n)) // header_map: field 1 as a varint
	for name, b := range map[string][]byte{"empty map entries": request(emptyEntries), "header_map wire type": request(varintHeaders)} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			got := &authv3.CheckRequest{}
			if decodeCheckRequest(b, got) {
				if h := got.GetAttributes().GetRequest().GetHttp().GetHeaders(); len(h) > 1 {
					t.Fatalf("decoded %d headers, want at most 1", len(h))
				}
			}
			runtime.ReadMemStats(&after)
			// The input is 2 MiB; a table or list reserved for 2^20
			// headers is tens of MB.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
				t.Fatalf("decoding a %d-byte request allocated %d bytes", len(b), alloc)
			}
		})
	}
}

// TestDecodeRefusesInvalidUTF8: invalid UTF-8 in any string field the
// decoder reads (each of the HTTP request's, a header name and value, a
// raw header's name and value, a context extension, a peer's, the TLS
// session's) is refused, as proto.Unmarshal refuses it, whether the rest
// of the request is ASCII or not; the same request with valid non-ASCII
// UTF-8 there decodes.
func TestDecodeRefusesInvalidUTF8(t *testing.T) {
	fields := map[string]func(m *authv3.CheckRequest, s string){
		"id":           func(m *authv3.CheckRequest, s string) { m.Attributes.Request.Http.Id = s },
		"method":       func(m *authv3.CheckRequest, s string) { m.Attributes.Request.Http.Method = s },
		"path":         func(m *authv3.CheckRequest, s string) { m.Attributes.Request.Http.Path = s },
		"host":         func(m *authv3.CheckRequest, s string) { m.Attributes.Request.Http.Host = s },
		"scheme":       func(m *authv3.CheckRequest, s string) { m.Attributes.Request.Http.Scheme = s },
		"query":        func(m *authv3.CheckRequest, s string) { m.Attributes.Request.Http.Query = s },
		"fragment":     func(m *authv3.CheckRequest, s string) { m.Attributes.Request.Http.Fragment = s },
		"protocol":     func(m *authv3.CheckRequest, s string) { m.Attributes.Request.Http.Protocol = s },
		"body":         func(m *authv3.CheckRequest, s string) { m.Attributes.Request.Http.Body = s },
		"header name":  func(m *authv3.CheckRequest, s string) { m.Attributes.Request.Http.Headers["x-"+s] = "v" },
		"header value": func(m *authv3.CheckRequest, s string) { m.Attributes.Request.Http.Headers["x-a"] = s },
		"raw header name": func(m *authv3.CheckRequest, s string) {
			m.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: s, Value: "v"}}}
		},
		"raw header value": func(m *authv3.CheckRequest, s string) {
			m.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "k", Value: s}}}
		},
		"context extension": func(m *authv3.CheckRequest, s string) { m.Attributes.ContextExtensions["k"] = s },
		"peer address": func(m *authv3.CheckRequest, s string) {
			m.Attributes.Source.Address.GetSocketAddress().Address = s
		},
		"principal": func(m *authv3.CheckRequest, s string) { m.Attributes.Destination.Principal = s },
		"sni":       func(m *authv3.CheckRequest, s string) { m.Attributes.TlsSession.Sni = s },
	}
	for name, set := range fields {
		for _, nonASCIIElsewhere := range []bool{false, true} {
			encode := func(s string) []byte {
				m := envoyCheckRequest(false)
				if nonASCIIElsewhere {
					m.Attributes.Request.Http.Headers["x-other"] = "é"
				}
				set(m, s)
				// proto.Marshal refuses invalid UTF-8: put the bad byte
				// in place of a marker of the same length.
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				return bytes.Replace(b, []byte("MARK"), []byte("M\xffRK"), 1)
			}
			if b := encode("é"); !decodeCheckRequest(b, &authv3.CheckRequest{}) {
				t.Errorf("%s: valid UTF-8 fell back", name)
			}
			b := encode("MARK")
			if decodeCheckRequest(b, &authv3.CheckRequest{}) {
				t.Errorf("%s (non-ASCII elsewhere %v): invalid UTF-8 decoded", name, nonASCIIElsewhere)
			}
			if proto.Unmarshal(b, &authv3.CheckRequest{}) == nil {
				t.Fatalf("%s: proto.Unmarshal took invalid UTF-8: not testing it", name)
			}
			checkDecode(t, b)
		}
	}
}
