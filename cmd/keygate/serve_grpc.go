package main

import (
	"runtime"

	"google.golang.org/grpc"
)

// streamWorkers keeps a pool of goroutines that serve Check calls one after
// another. Without it gRPC starts a goroutine per call, and each grows its
// stack from 8 KiB to what policy evaluation needs by copying it several
// times: profiled at 1,000 rps that stack growth (runtime.newstack /
// copystack) was ~20% of keygate's CPU. Calls beyond the pool still get a
// goroutine of their own, so a slow store read never holds others up.
func streamWorkers() grpc.ServerOption {
	return grpc.NumStreamWorkers(uint32(max(64, 16*runtime.GOMAXPROCS(0))))
}
