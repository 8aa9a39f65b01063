# Response shaping: how decisions look to the client. The status, code and
# message of each error come from config.errors (config.public_errors on public site routes),
# the JSON body's shape from config.body_shape. A deployment whose bodies no
# shape below produces can replace this file alone.
package keygate.authz

import rego.v1

# deny_with turns a denial [table, name, rule] into the deny document:
# config[table][name] gives status, message and optionally code and body.
deny_with([table, name, rule]) := shaped(config[table][name], name, rule)

shaped(e, name, rule) := {
	"allow": false,
	"status": e.status,
	"code": object.get(e, "code", name),
	"message": e.message,
	"rule": rule,
	"body": object.get(e, "body", body(object.get(e, "code", name), e.message)),
}

# METADATA
# title: body
# description: |
#   The deny body by config.body_shape: code_message → {"code","message"};
#   message → {"message"}; error_object → {"error": {"code","message",
#   "request_id"}} (request_id when the proxy sent x-request-id). An
#   error entry in config.errors may carry its own "body" instead.
body(code, message) := {"code": code, "message": message} if config.body_shape == "code_message"

body(_, message) := {"message": message} if config.body_shape == "message"

body(code, message) := {"error": object.union({"code": code, "message": message}, request_id)} if {
	config.body_shape == "error_object"
}

# request_id echoes the proxy's x-request-id (Envoy sets one on every
# request) so a client can quote it to support.
default request_id := {}

request_id := {"request_id": id} if id := input.request.headers["x-request-id"]

allow_with(headers, rule) := {
	"allow": true,
	"status": 200,
	"headers": headers,
	"rule": rule,
	"limits": limits,
	"keep_credentials": keep_credentials,
}

# METADATA
# title: keep_credentials
# description: |
#   Whether the credential headers (Authorization, X-API-Key) reach the
#   upstream on allow. config.strip_credentials (default true) removes them.
default keep_credentials := false

keep_credentials if config.strip_credentials == false
