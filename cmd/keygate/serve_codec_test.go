package main

import (
	"errors"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/encoding"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

func headerOptions(kv ...string) []*corev3.HeaderValueOption {
	var out []*corev3.HeaderValueOption
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: kv[i], Value: kv[i+1]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return out
}

func metadata(kv ...string) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.Fields[kv[i]] = structpb.NewStringValue(kv[i+1])
	}
	return s
}

// checkResponses are the shapes serve answers with: an allow with identity
// headers, removals, rate headers and metadata; a denial with a body.
func checkResponses() []*authv3.CheckResponse {
	allow := &authv3.CheckResponse{
		Status:          &status.Status{Code: 0},
		DynamicMetadata: metadata("code", "OK", "rule", "allow", "decision_id", "01JABCDEF", "key_id", "key_1", "mode", "live", "site", "site_1"),
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: headerOptions("x-keygate-account", "acct_1", "x-keygate-site", "site_1", "x-keygate-key-id", "key_1",
				"x-keygate-mode", "live", "x-keygate-plan", "pro", "x-keygate-concurrency", "3", "x-keygate-decision-id", "01JABCDEF"),
			HeadersToRemove:      []string{"authorization", "x-keygate-evil"},
			ResponseHeadersToAdd: headerOptions("ratelimit-limit", "300", "ratelimit-remaining", "299"),
		}},
	}
	deny := &authv3.CheckResponse{
		Status:          &status.Status{Code: 16, Message: "INVALID_API_KEY"},
		DynamicMetadata: metadata("code", "INVALID_API_KEY", "rule", "key_unknown", "decision_id", "01JABCDEG"),
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
			Headers: headerOptions("content-type", "application/json", "www-authenticate", `Bearer realm="api"`, "x-keygate-decision-id", "01JABCDEG"),
			Body:    `{"code":"INVALID_API_KEY","message":"Invalid API key"}`,
		}},
	}
	odd := &authv3.CheckResponse{Status: &status.Status{Code: -3, Message: "x"}} // a negative code is ten bytes
	bare := &authv3.CheckResponse{Status: &status.Status{}}
	detailed := &authv3.CheckResponse{Status: &status.Status{Code: 7, Details: []*anypb.Any{{TypeUrl: "type.googleapis.com/x", Value: []byte{1}}}}}
	return []*authv3.CheckResponse{allow, deny, {}, odd, bare, detailed}
}

// TestServerCodecStatusNotReflected: a response's status is marshalled
// without protobuf-go's reflection (which allocates), and a status message
// that is not valid UTF-8 is still proto.Marshal's error.
func TestServerCodecStatusNotReflected(t *testing.T) {
	c := vtCodec{proto: encoding.GetCodecV2("proto")}
	bad := &authv3.CheckResponse{Status: &status.Status{Code: 3, Message: "bad \xff"}}
	if _, err := c.Marshal(bad); err == nil {
		t.Error("a status message that is not UTF-8 marshalled")
	}
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	deny, ok := any(checkResponses()[1]).(vtMessage)
	if !ok {
		t.Skip("built without -tags vtprotobuf: no generated code")
	}
	got := testing.AllocsPerRun(50, func() { data, _ := c.Marshal(deny); data.Free() })
	generated := testing.AllocsPerRun(50, func() { data, _ := marshalVT(deny); data.Free() })
	if got >= generated {
		t.Errorf("marshalling a denial allocates %v times, the generated code (status reflected) %v", got, generated)
	}
}

// TestServerCodec: what the server's codec marshals is what the proto
// codec reads back, for CheckResponses (generated marshalling code when
// built with -tags vtprotobuf) and for other messages (the proto codec's).
func TestServerCodec(t *testing.T) {
	c := vtCodec{proto: encoding.GetCodecV2("proto")}
	if c.Name() != "proto" {
		t.Fatalf("codec name %q, want proto", c.Name())
	}
	msgs := []proto.Message{&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}}
	for _, r := range checkResponses() {
		msgs = append(msgs, r)
	}
	for i, m := range msgs {
		data, err := c.Marshal(m)
		if err != nil {
			t.Fatalf("%d: marshal: %v", i, err)
		}
		got := m.ProtoReflect().New().Interface()
		if err := c.Unmarshal(data, got); err != nil {
			t.Fatalf("%d: unmarshal: %v", i, err)
		}
		if !proto.Equal(got, m) {
			t.Errorf("%d: read back\n%v\nwant\n%v", i, got, m)
		}
		want, _ := proto.Marshal(m)
		if n := data.Len(); n != len(want) {
			t.Errorf("%d: %d bytes, proto.Marshal gives %d", i, n, len(want))
		}
	}
}

// BenchmarkServerCodec marshals an allow's CheckResponse as serve does
// (go test -tags vtprotobuf for the generated code; without the tag this
// is the proto codec); generated is the generated code alone (status
// reflected), proto gRPC's own codec.
func BenchmarkServerCodec(b *testing.B) {
	allow := checkResponses()[0]
	for _, c := range []struct {
		name    string
		marshal func(any) (mem.BufferSlice, error)
	}{
		{"serve", vtCodec{proto: encoding.GetCodecV2("proto")}.Marshal},
		{"generated", func(v any) (mem.BufferSlice, error) {
			if m, ok := v.(vtMessage); ok {
				return marshalVT(m)
			}
			return nil, errors.New("built without -tags vtprotobuf: no generated code")
		}},
		{"proto", encoding.GetCodecV2("proto").Marshal},
	} {
		b.Run(c.name, func(b *testing.B) {
			if _, err := c.marshal(allow); err != nil {
				b.Skip(err)
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				data, err := c.marshal(allow)
				if err != nil {
					b.Fatal(err)
				}
				n = data.Len()
				data.Free()
			}
			b.ReportMetric(float64(n), "bytes/msg")
		})
	}
}
