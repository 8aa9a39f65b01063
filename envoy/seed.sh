#!/bin/sh
# Demo data for docker compose, run once per `docker compose up` by the
# one-shot "seed" service (docker-compose.yml). Re-running it keeps the
# accounts and sites and replaces the demo keys. It prints the keys as
# LIVE_KEY=… / TEST_KEY=… lines; the README reads them with
#   docker compose logs --no-log-prefix seed
set -eu

# "demo" (plan pro) owns "demo-site": its keys reach the upstream.
keygate accounts create --id demo --plan pro || keygate accounts update --id demo --plan pro --status active
keygate sites create --id demo-site --account demo --domain localhost:10000 --domain example.com || true
# "lapsed" is out of trial: its public route answers 402.
keygate accounts create --id lapsed --plan pro --status trial_expired || true
keygate sites create --id lapsed-site --account lapsed --domain localhost:10000 || true

# rotate-key --mode all revokes every earlier key of the site (live and
# test) and prints a new live key, so one run's keys are the only ones
# that work.
live=$(keygate sites rotate-key --id demo-site --mode all --name compose-live)
test=$(keygate keys create --site demo-site --mode test --name compose-test)
echo "LIVE_KEY=$live"
echo "TEST_KEY=$test"
