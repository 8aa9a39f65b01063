# Limits: which counters a request charges (rate limits, monthly quotas). The
# decision carries them as "limits"; keygate charges them only on allow.
package keygate.authz

import rego.v1

# METADATA
# title: limits
# description: The counters this request charges; none by default.
default limits := []
