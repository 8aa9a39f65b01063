package main

import (
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// decodeCheckRequest decodes b into m (reset first) without protobuf-go's
// reflection, for the fields Envoy's ext_authz filter fills in: profiled
// under the realistic workload, proto.Unmarshal of the CheckRequest was
// ~12% of serve's CPU (go-control-plane generates vtprotobuf marshalling
// code for Envoy's types, but no unmarshalling code).
//
// It reports false for anything it does not handle exactly as
// proto.Unmarshal does - an unknown field number, a known field with an
// unexpected wire type, metadata, malformed or truncated input, invalid
// UTF-8 in a string - and the caller then decodes with proto.Unmarshal,
// which decides: an error, unknown fields kept, and so on. What it does
// decode it decodes as proto.Unmarshal would: the last of repeated
// scalars wins, repeated sub-messages merge, a oneof's other member
// replaces it, map entries overwrite by key (FuzzDecodeCheckRequest checks
// the two agree).
func decodeCheckRequest(b []byte, m *authv3.CheckRequest) bool {
	m.Reset()
	p := new(requestParts)
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		if num != 1 {
			return -1
		}
		return message(typ, b, use(&m.Attributes, &p.attrs), p.decodeAttributes)
	})
}

// requestParts are the messages an Envoy CheckRequest is made of,
// allocated together: one allocation where each had its own (~15 of the
// ~40 a decoded request took). They live as long as the request; a field
// takes its part at its first occurrence (use), and one that never occurs
// stays nil as proto.Unmarshal leaves it.
type requestParts struct {
	attrs           authv3.AttributeContext
	request         authv3.AttributeContext_Request
	http            authv3.AttributeContext_HttpRequest
	time            timestamppb.Timestamp
	meta, routeMeta corev3.Metadata
	tls             authv3.AttributeContext_TLSSession
	source, dest    peerParts
	headerMap       corev3.HeaderMap
}

// peerParts are a peer's messages, down to a socket address's port.
type peerParts struct {
	peer   authv3.AttributeContext_Peer
	addr   corev3.Address
	member corev3.Address_SocketAddress
	socket corev3.SocketAddress
	port   corev3.SocketAddress_PortValue
	// socketTaken: member and socket went to the address once. Should
	// the oneof's other member replace them and a socket address come
	// again, that one starts empty in an allocation of its own.
	socketTaken bool
}

// use sets *dst to part when an earlier occurrence has not set it: the
// field is present (even empty) from its first occurrence on, and later
// occurrences merge into it.
func use[T any](dst **T, part *T) *T {
	if *dst == nil {
		*dst = part
	}
	return *dst
}

func (p *requestParts) decodeAttributes(b []byte, m *authv3.AttributeContext) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 1:
			return message(typ, b, use(&m.Source, &p.source.peer), p.source.decodePeer)
		case 2:
			return message(typ, b, use(&m.Destination, &p.dest.peer), p.dest.decodePeer)
		case 4:
			return message(typ, b, use(&m.Request, &p.request), p.decodeRequest)
		case 10:
			return stringMapEntry(typ, b, &m.ContextExtensions, unknownTail)
		case 11:
			return message(typ, b, use(&m.MetadataContext, &p.meta), decodeMetadata)
		case 12:
			return message(typ, b, use(&m.TlsSession, &p.tls), decodeTLSSession)
		case 13:
			return message(typ, b, use(&m.RouteMetadataContext, &p.routeMeta), decodeMetadata)
		}
		return -1
	})
}

// decodeMetadata handles only an empty Metadata (Envoy sends one when no
// namespaces are configured); its Structs are left to proto.Unmarshal.
func decodeMetadata(b []byte, _ *corev3.Metadata) bool { return len(b) == 0 }

func decodeTLSSession(b []byte, m *authv3.AttributeContext_TLSSession) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		if num == 1 {
			return str(typ, b, &m.Sni)
		}
		return -1
	})
}

func (pp *peerParts) decodePeer(b []byte, m *authv3.AttributeContext_Peer) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 1:
			return message(typ, b, use(&m.Address, &pp.addr), pp.decodeAddress)
		case 2:
			return str(typ, b, &m.Service)
		case 3:
			return stringMapEntry(typ, b, &m.Labels, unknownTail)
		case 4:
			return str(typ, b, &m.Principal)
		case 5:
			return str(typ, b, &m.Certificate)
		}
		return -1
	})
}

// decodeAddress handles the oneof's socket_address and pipe: a repeat of
// the member set merges into it, the other member replaces it.
func (pp *peerParts) decodeAddress(b []byte, m *corev3.Address) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 1:
			s, ok := m.Address.(*corev3.Address_SocketAddress)
			if !ok || s.SocketAddress == nil {
				s = pp.newSocket()
			}
			m.Address = s
			return message(typ, b, s.SocketAddress, pp.decodeSocketAddress)
		case 2:
			p, ok := m.Address.(*corev3.Address_Pipe)
			if !ok || p.Pipe == nil {
				p = &corev3.Address_Pipe{Pipe: &corev3.Pipe{}}
			}
			m.Address = p
			return message(typ, b, p.Pipe, decodePipe)
		}
		return -1
	})
}

// newSocket is the socket address member of a peer's address: the peer's
// part the first time, a new one after that.
func (pp *peerParts) newSocket() *corev3.Address_SocketAddress {
	if pp.socketTaken {
		return &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{}}
	}
	pp.socketTaken = true
	pp.member.SocketAddress = &pp.socket
	return &pp.member
}

// portValue is the port_value member for m: the peer's part when m is the
// peer's socket address (a repeat overwrites the one value it holds), a
// new one otherwise.
func (pp *peerParts) portValue(m *corev3.SocketAddress) *corev3.SocketAddress_PortValue {
	if m == &pp.socket {
		return &pp.port
	}
	return &corev3.SocketAddress_PortValue{}
}

func (pp *peerParts) decodeSocketAddress(b []byte, m *corev3.SocketAddress) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		var v uint64
		var n int
		switch num {
		case 1:
			n = varint(typ, b, &v)
			m.Protocol = corev3.SocketAddress_Protocol(int32(v))
		case 2:
			return str(typ, b, &m.Address)
		case 3:
			n = varint(typ, b, &v)
			port := pp.portValue(m)
			port.PortValue = uint32(v)
			m.PortSpecifier = port
		case 4:
			p := &corev3.SocketAddress_NamedPort{}
			m.PortSpecifier = p
			return str(typ, b, &p.NamedPort)
		case 5:
			return str(typ, b, &m.ResolverName)
		case 6:
			n = varint(typ, b, &v)
			m.Ipv4Compat = v != 0
		case 7:
			return str(typ, b, &m.NetworkNamespaceFilepath)
		default:
			return -1
		}
		return n
	})
}

func decodePipe(b []byte, m *corev3.Pipe) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 1:
			return str(typ, b, &m.Path)
		case 2:
			var v uint64
			n := varint(typ, b, &v)
			m.Mode = uint32(v)
			return n
		}
		return -1
	})
}

func (p *requestParts) decodeRequest(b []byte, m *authv3.AttributeContext_Request) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 1:
			return message(typ, b, use(&m.Time, &p.time), decodeTimestamp)
		case 2:
			return message(typ, b, use(&m.Http, &p.http), p.decodeHTTP)
		}
		return -1
	})
}

func decodeTimestamp(b []byte, m *timestamppb.Timestamp) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		var v uint64
		var n int
		switch num {
		case 1:
			n = varint(typ, b, &v)
			m.Seconds = int64(v)
		case 2:
			n = varint(typ, b, &v)
			m.Nanos = int32(v)
		default:
			return -1
		}
		return n
	})
}

func (p *requestParts) decodeHTTP(b []byte, m *authv3.AttributeContext_HttpRequest) bool {
	if m.Headers == nil {
		// Sized once: Envoy sends a request's headers as 10–30 entries,
		// which grown one by one move the map's table two or three times.
		// At most maxPresizedHeaders: entries can repeat a key, and a
		// 4 MiB request of empty entries would otherwise reserve a table
		// of two million slots for a map of one.
		if n := countField(b, 3); n > 0 {
			m.Headers = make(map[string]string, min(n, maxPresizedHeaders))
		}
	}
	// Usually the message is ASCII up to Envoy's size field (tags, short
	// lengths, header names and values): no string before it needs a
	// check of its own.
	tail := asciiTail(b)
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 3:
			return stringMapEntry(typ, b, &m.Headers, tail)
		case 9:
			var v uint64
			n := varint(typ, b, &v)
			m.Size = int64(v)
			return n
		case 12:
			return byteString(typ, b, &m.RawBody)
		case 13:
			return message(typ, b, use(&m.HeaderMap, &p.headerMap), decodeHeaderMap)
		}
		if p := httpString(m, num); p != nil {
			return text(typ, b, p, tail)
		}
		return -1
	})
}

// maxPresizedHeaders bounds the headers map's reserved size (Envoy's
// default max_headers_count is 100); a request with more grows it.
const maxPresizedHeaders = 128

// httpString is the HttpRequest's string field numbered num, or nil.
func httpString(m *authv3.AttributeContext_HttpRequest, num protowire.Number) *string {
	switch num {
	case 1:
		return &m.Id
	case 2:
		return &m.Method
	case 4:
		return &m.Path
	case 5:
		return &m.Host
	case 6:
		return &m.Scheme
	case 7:
		return &m.Query
	case 8:
		return &m.Fragment
	case 10:
		return &m.Protocol
	case 11:
		return &m.Body
	}
	return nil
}

// decodeHeaderMap decodes encode_raw_headers' header list; its values are
// allocated together, as a request's other parts are.
func decodeHeaderMap(b []byte, m *corev3.HeaderMap) bool {
	n := countField(b, 1)
	values := make([]corev3.HeaderValue, n)
	m.Headers = slices.Grow(m.Headers, n)
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		if num != 1 || len(values) == 0 {
			return -1
		}
		h := &values[0]
		values = values[1:]
		m.Headers = append(m.Headers, h)
		return message(typ, b, h, decodeHeaderValue)
	})
}

func decodeHeaderValue(b []byte, m *corev3.HeaderValue) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 1:
			return str(typ, b, &m.Key)
		case 2:
			return str(typ, b, &m.Value)
		case 3:
			return byteString(typ, b, &m.RawValue)
		}
		return -1
	})
}
