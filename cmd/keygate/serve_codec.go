package main

import (
	"fmt"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// vtMessage is a message with generated marshalling code: go-control-plane
// generates it for Envoy's types (CheckResponse, its headers, statuses,
// and through planetscale/vtprotobuf the metadata's Struct), compiled in
// with the build tag vtprotobuf (the Makefile and Dockerfile set it).
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVTStrict(dAtA []byte) (int, error)
}

// vtCodec is gRPC's proto codec, except that a message with generated
// marshalling code is marshalled by it. protobuf-go's table-driven
// marshaller walks a CheckResponse's header lists and metadata maps
// through reflection: profiled under the fixed workload, marshalling the
// response was ~12% of serve's CPU against ~3% generated. A CheckRequest
// is unmarshalled by decodeCheckRequest; marshalling and unmarshalling
// anything else is the proto codec's as it was.
type vtCodec struct{ proto encoding.CodecV2 }

// serverCodec is the gRPC server's codec (grpc.ForceServerCodecV2).
func serverCodec() grpc.ServerOption {
	return grpc.ForceServerCodecV2(vtCodec{proto: encoding.GetCodecV2("proto")})
}

func (c vtCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*authv3.CheckResponse); ok {
		if buf, ok := marshalCheckResponse(r); ok {
			return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
		}
	}
	m, ok := v.(vtMessage)
	if !ok {
		return c.proto.Marshal(v)
	}
	return marshalVT(m)
}

// marshalVT marshals m with its generated code.
func marshalVT(m vtMessage) (mem.BufferSlice, error) {
	size := m.SizeVT()
	buf := make([]byte, size)
	n, err := m.MarshalToSizedBufferVTStrict(buf)
	if err != nil {
		return nil, fmt.Errorf("vtcodec: marshal %T: %w", m, err)
	}
	if n != size {
		return nil, fmt.Errorf("vtcodec: marshal %T: %d bytes written, %d sized", m, n, size)
	}
	return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
}

// marshalCheckResponse marshals r with its status (google.rpc.Status)
// encoded here: genproto has no generated code for Status, so the
// generated CheckResponse code sizes and marshals it with protobuf-go's
// reflection (profiled: about a third of marshalling a response). It
// reports false for what it leaves to the generated code: a status with
// details or unknown fields, a message that is not valid UTF-8 (for
// proto.Marshal's error), or a response with unknown fields.
func marshalCheckResponse(r *authv3.CheckResponse) ([]byte, bool) {
	st := r.GetStatus()
	if st == nil || len(st.GetDetails()) > 0 || len(st.ProtoReflect().GetUnknown()) > 0 ||
		len(r.ProtoReflect().GetUnknown()) > 0 || !utf8.ValidString(st.GetMessage()) {
		return nil, false
	}
	// rest is r without its status: the generated code does the rest (none
	// without the build tag: the proto codec then marshals r).
	rest, ok := any(&authv3.CheckResponse{HttpResponse: r.HttpResponse, DynamicMetadata: r.DynamicMetadata}).(vtMessage)
	if !ok {
		return nil, false
	}
	code := uint64(int64(st.Code)) // int32: a negative code is ten bytes
	n := 0
	if code != 0 {
		n += 1 + protowire.SizeVarint(code)
	}
	if st.Message != "" {
		n += 1 + protowire.SizeBytes(len(st.Message))
	}
	size := rest.SizeVT()
	buf := make([]byte, 0, 1+protowire.SizeVarint(uint64(n))+n+size)
	buf = protowire.AppendVarint(protowire.AppendTag(buf, 1, protowire.BytesType), uint64(n))
	if code != 0 {
		buf = protowire.AppendVarint(protowire.AppendTag(buf, 1, protowire.VarintType), code)
	}
	if st.Message != "" {
		buf = protowire.AppendString(protowire.AppendTag(buf, 2, protowire.BytesType), st.Message)
	}
	at := len(buf)
	buf = buf[:at+size]
	if w, err := rest.MarshalToSizedBufferVTStrict(buf[at:]); err != nil || w != size {
		return nil, false
	}
	return buf, true
}

// Unmarshal decodes a CheckRequest with decodeCheckRequest, and with the
// proto codec whatever that leaves to it (and every other message).
func (c vtCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*authv3.CheckRequest)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	if decodeCheckRequest(b, m) {
		return nil
	}
	return proto.Unmarshal(b, m)
}

// Name is the proto codec's: clients send application/grpc+proto.
func (c vtCodec) Name() string { return c.proto.Name() }
