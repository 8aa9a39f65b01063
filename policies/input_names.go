package policies

import "github.com/open-policy-agent/opa/v1/ast"

// fields holds the input's field names as terms, made once: every input has
// the same keys, and a term of its own for each cost a third of an input's
// terms. They are shared as the vocabulary's values are: nothing writes to
// an input's terms.
var fields = struct {
	request, credential, key, site, account, public                 *ast.Term
	method, host, path, query, pathOK, headers, prefixes, exactPath *ast.Term
	caseFolded, clientAddress, origin, scheme, port, defaultPort    *ast.Term
	status, kind, id, mode, name, revoked, expired, scopes, cidrs   *ast.Term
	meta, remaining, active, domains, plan, limits, ownSitePrefixes *ast.Term
}{
	request: ast.StringTerm("request"), credential: ast.StringTerm("credential"), key: ast.StringTerm("key"),
	site: ast.StringTerm("site"), account: ast.StringTerm("account"), public: ast.StringTerm("public"),
	method: ast.StringTerm("method"), host: ast.StringTerm("host"), path: ast.StringTerm("path"),
	query: ast.StringTerm("query"), pathOK: ast.StringTerm("path_ok"), headers: ast.StringTerm("headers"),
	prefixes: ast.StringTerm("prefixes"), exactPath: ast.StringTerm("exact_path"),
	caseFolded: ast.StringTerm("case_folded"), clientAddress: ast.StringTerm("client_address"),
	origin: ast.StringTerm("origin"), scheme: ast.StringTerm("scheme"), port: ast.StringTerm("port"),
	defaultPort: ast.StringTerm("default_port"), status: ast.StringTerm("status"), kind: ast.StringTerm("kind"),
	id: ast.StringTerm("id"), mode: ast.StringTerm("mode"), name: ast.StringTerm("name"),
	revoked: ast.StringTerm("revoked"), expired: ast.StringTerm("expired"), scopes: ast.StringTerm("scopes"),
	cidrs: ast.StringTerm("allowed_cidrs"), meta: ast.StringTerm("meta"), remaining: ast.StringTerm("remaining"),
	active: ast.StringTerm("active"), domains: ast.StringTerm("domains"), plan: ast.StringTerm("plan"),
	limits: ast.StringTerm("limits"), ownSitePrefixes: ast.StringTerm("own_site_prefixes"),
}

// emptyObject is the value of every empty input object (request.headers
// when the policy reads no header): shared, read-only.
var emptyObject = ast.NewTerm(ast.NewObject())
