package limits

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Redis keeps rate counters in Redis, shared by every replica. Each charge
// is one EVALSHA of redis_rate's GCRA script: read, decide and write happen
// atomically inside Redis, on Redis's clock, so replicas cannot race each
// other past a limit and their clock skew does not matter.
type Redis struct {
	limiter *redis_rate.Limiter
	prefix  string
}

// NewRedis counts in client under keys prefixed with prefix (redis_rate adds
// its own "rate:" in front).
func NewRedis(client *redis.Client, prefix string) *Redis {
	return &Redis{limiter: redis_rate.NewLimiter(client), prefix: prefix}
}

func (r *Redis) charge(ctx context.Context, _ time.Time, c Counter) (Result, error) {
	lim := redis_rate.Limit{Rate: int(c.Limit), Burst: int(c.burst()), Period: c.Period}
	res, err := r.limiter.AllowN(ctx, r.prefix+c.Key, lim, int(c.Cost))
	if err != nil {
		return Result{}, fmt.Errorf("limits: redis: %w", err)
	}
	out := Result{Counter: c, Allowed: res.Allowed > 0 || c.Cost == 0, Remaining: int64(res.Remaining), ResetAfter: res.ResetAfter}
	if !out.Allowed {
		out.RetryAfter = res.RetryAfter
	}
	return out, nil
}
