# Response shaping: how decisions look to the client. The status, code and
# message of each error come from config.errors (config.public_errors on public site routes),
# the JSON body's shape from config.body_shape. A deployment whose bodies no
# shape below produces can replace this file alone.
package keygate.authz

import rego.v1

# deny_with turns a denial [table, name, rule] into the deny document:
# config[table][name] gives status, message and optionally code, body,
# content_type and (problem shape) type and title.
deny_with([table, name, rule]) := shaped(config[table][name], name, rule)

shaped(e, name, rule) := {
	"allow": false,
	"status": e.status,
	"code": object.get(e, "code", name),
	"message": e.message,
	"rule": rule,
	"body": object.get(e, "body", body(object.get(e, "code", name), e)),
	"content_type": object.get(e, "content_type", content_type),
}

# METADATA
# title: denials
# description: |
#   Every entry of config.errors as a deny document, by name. keygate looks
#   up here the denials it makes itself (timeouts, panics, outages, limit
#   refusals, the token exchange's errors), so they take this deployment's
#   shape too. Evaluated once per policy load: it must not read input.
denials[name] := deny_with(["errors", name, lower(name)]) if some name, _ in config.errors

# METADATA
# title: body
# description: |
#   The deny body by config.body_shape: code_message → {"code","message"};
#   message → {"message"}; error_object → {"error": {"code","message",
#   "request_id"}} (request_id when the proxy sent x-request-id); problem →
#   RFC 9457 problem details {"type","title","status","detail"}. An error
#   entry in config.errors may carry its own "body" instead.
body(code, e) := {"code": code, "message": e.message} if config.body_shape == "code_message"

body(_, e) := {"message": e.message} if config.body_shape == "message"

body(code, e) := {"error": object.union({"code": code, "message": e.message}, request_id)} if {
	config.body_shape == "error_object"
}

body(code, e) := {
	"type": object.get(e, "type", problem_type(code)),
	"title": object.get(e, "title", e.message),
	"status": e.status,
	"detail": e.message,
} if {
	config.body_shape == "problem"
}

# problem_type is config.problem_type_base followed by the code in lower
# case with dashes, or RFC 9457's "about:blank" without a base.
default problem_type(_) := "about:blank"

problem_type(code) := concat("", [config.problem_type_base, replace(lower(code), "_", "-")]) if {
	config.problem_type_base != ""
}

# METADATA
# title: content_type
# description: |
#   The deny body's media type: config.content_type when set, else
#   application/problem+json for the problem shape, else application/json.
#   An error entry may set its own content_type.
default content_type := "application/json"

content_type := config.content_type if {
	config.content_type != ""
} else := "application/problem+json" if {
	config.body_shape == "problem"
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
	"spend_use": spend_use,
}

# METADATA
# title: keep_credentials
# description: |
#   Whether the credential headers (Authorization, X-API-Key) reach the
#   upstream on allow. config.strip_credentials (default true) removes them.
default keep_credentials := false

keep_credentials if config.strip_credentials == false
