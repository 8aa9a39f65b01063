package main

import (
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
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		if num != 1 {
			return -1
		}
		return message(typ, b, ensure(&m.Attributes), decodeAttributes)
	})
}

func decodeAttributes(b []byte, m *authv3.AttributeContext) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 1:
			return message(typ, b, ensure(&m.Source), decodePeer)
		case 2:
			return message(typ, b, ensure(&m.Destination), decodePeer)
		case 4:
			return message(typ, b, ensure(&m.Request), decodeRequest)
		case 10:
			return stringMapEntry(typ, b, &m.ContextExtensions)
		case 11:
			return message(typ, b, ensure(&m.MetadataContext), decodeMetadata)
		case 12:
			return message(typ, b, ensure(&m.TlsSession), decodeTLSSession)
		case 13:
			return message(typ, b, ensure(&m.RouteMetadataContext), decodeMetadata)
		}
		return -1
	})
}

// ensure allocates *p when an earlier occurrence has not: the field is
// present (even empty) from its first occurrence on.
func ensure[T any](p **T) *T {
	if *p == nil {
		*p = new(T)
	}
	return *p
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

func decodePeer(b []byte, m *authv3.AttributeContext_Peer) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 1:
			return message(typ, b, ensure(&m.Address), decodeAddress)
		case 2:
			return str(typ, b, &m.Service)
		case 3:
			return stringMapEntry(typ, b, &m.Labels)
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
func decodeAddress(b []byte, m *corev3.Address) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 1:
			s, ok := m.Address.(*corev3.Address_SocketAddress)
			if !ok || s.SocketAddress == nil {
				s = &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{}}
			}
			m.Address = s
			return message(typ, b, s.SocketAddress, decodeSocketAddress)
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

func decodeSocketAddress(b []byte, m *corev3.SocketAddress) bool {
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
			m.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: uint32(v)}
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

func decodeRequest(b []byte, m *authv3.AttributeContext_Request) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 1:
			return message(typ, b, ensure(&m.Time), decodeTimestamp)
		case 2:
			return message(typ, b, ensure(&m.Http), decodeHTTP)
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

func decodeHTTP(b []byte, m *authv3.AttributeContext_HttpRequest) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 3:
			return stringMapEntry(typ, b, &m.Headers)
		case 9:
			var v uint64
			n := varint(typ, b, &v)
			m.Size = int64(v)
			return n
		case 12:
			return byteString(typ, b, &m.RawBody)
		case 13:
			return message(typ, b, ensure(&m.HeaderMap), decodeHeaderMap)
		}
		if p := httpString(m, num); p != nil {
			return str(typ, b, p)
		}
		return -1
	})
}

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

func decodeHeaderMap(b []byte, m *corev3.HeaderMap) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		if num != 1 {
			return -1
		}
		h := &corev3.HeaderValue{}
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
