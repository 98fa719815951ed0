"""The OpenAPI 3.1 document of web/openapi.json, checked two ways:

- structure(doc): the document itself. No Debian package ships the official
  OpenAPI 3.1 JSON schema, so this checks what that schema would (the
  objects' required and allowed fields, parameter locations, status keys,
  security names) and more (every $ref resolves inside the document, path
  templates match their path parameters, operationIds are unique, every
  schema is a valid JSON Schema 2020-12, every example fits its schema).
- Api(doc).check(...): a real answer of the server against the operation
  the document gives for its method and path (status listed, content type,
  required headers and their schemas, the body against the schema with a
  JSON Schema 2020-12 validator).

Uses python3-jsonschema (Debian; scripts/deps.sh installs it)."""

import json
import re
import sys

try:
    import jsonschema
except ImportError:  # an interpreter of its own (pyenv, venv): Debian's copy
    sys.path.append("/usr/lib/python3/dist-packages")
    import jsonschema

Validator = jsonschema.Draft202012Validator

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ROOT_KEYS = {"openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks",
             "components", "security", "tags", "externalDocs"}
PATH_ITEM_KEYS = {"$ref", "summary", "description", "servers", "parameters"} | set(HTTP_METHODS)
OPERATION_KEYS = {"tags", "summary", "description", "externalDocs", "operationId", "parameters",
                  "requestBody", "responses", "callbacks", "deprecated", "security", "servers"}
PARAMETER_KEYS = {"name", "in", "description", "required", "deprecated", "allowEmptyValue",
                  "style", "explode", "allowReserved", "schema", "example", "examples", "content"}
RESPONSE_KEYS = {"description", "headers", "content", "links"}
HEADER_KEYS = PARAMETER_KEYS - {"name", "in", "allowEmptyValue", "allowReserved"}
MEDIA_KEYS = {"schema", "example", "examples", "encoding"}
BODY_KEYS = {"description", "content", "required"}
COMPONENT_KINDS = {"schemas", "responses", "parameters", "examples", "requestBodies", "headers",
                   "securitySchemes", "links", "callbacks", "pathItems"}
STATUS_RX = re.compile(r"^([1-5][0-9][0-9]|[1-5]XX|default)$")
NAME_RX = re.compile(r"^[a-zA-Z0-9._-]+$")


def is_ext(k):
    return isinstance(k, str) and k.startswith("x-")


def pointer(doc, ref):
    """The value a local $ref ("#/a/b") names; KeyError if none."""
    if not ref.startswith("#"):
        raise KeyError("not a local reference: %s" % ref)
    node = doc
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(ref)
    return node


def deref(doc, obj):
    """obj, or what its $ref names (Reference Objects, not schemas)."""
    seen = 0
    while isinstance(obj, dict) and "$ref" in obj:
        obj = pointer(doc, obj["$ref"])
        seen += 1
        if seen > 16:
            raise KeyError("reference loop")
    return obj


def validator(doc, schema, cache={}):
    """A 2020-12 validator for schema (a Schema Object of doc): the
    document's components ride along so that "#/components/..." resolves
    against the same root in every jsonschema version."""
    key = (id(doc), json.dumps(schema, sort_keys=True))
    v = cache.get(key)
    if v is None:
        root = dict(schema) if isinstance(schema, dict) else {"allOf": [schema]}
        if isinstance(schema, dict) and "components" in schema:
            root = {"allOf": [schema]}
        root["components"] = doc.get("components", {})
        v = cache[key] = Validator(root, format_checker=jsonschema.FormatChecker())
    return v


def schema_errors(doc, schema, instance):
    """The validation errors of instance against schema, as text."""
    try:
        return ["%s at %s" % (e.message[:300],
                              "/".join(str(p) for p in e.absolute_path) or "(root)")
                for e in validator(doc, schema).iter_errors(instance)]
    except Exception as e:  # an unresolvable $ref: its class differs across versions
        return ["cannot validate: %s: %s" % (type(e).__name__, str(e)[:300])]


# ----------------------------------------------------------------- structure


class _Walk:
    def __init__(self, doc):
        self.doc = doc
        self.errors = []
        self.schemas = []   # (where, schema) of every Schema Object
        self.examples = []  # (where, schema, example)

    def err(self, where, msg):
        self.errors.append("%s: %s" % (where, msg))

    def keys(self, where, obj, allowed, required=()):
        if not isinstance(obj, dict):
            self.err(where, "expected an object")
            return False
        for k in obj:
            if k not in allowed and not is_ext(k):
                self.err(where, "unknown field %r" % k)
        for k in required:
            if k not in obj:
                self.err(where, "missing %r" % k)
        return True

    def ref_or(self, where, obj, kind):
        """A Reference Object (to components/<kind>) or the object itself."""
        if isinstance(obj, dict) and "$ref" in obj:
            extra = set(obj) - {"$ref", "summary", "description"}
            if extra:
                self.err(where, "a Reference Object has only $ref, summary, description")
            ref = obj["$ref"]
            if not (isinstance(ref, str) and ref.startswith("#/components/%s/" % kind)):
                self.err(where, "$ref %r is not to components/%s" % (ref, kind))
            try:
                return deref(self.doc, obj)
            except (KeyError, ValueError, IndexError) as e:
                self.err(where, "unresolved $ref %r (%s)" % (ref, e))
                return None
        return obj

    def schema(self, where, s):
        if isinstance(s, (dict, bool)):
            self.schemas.append((where, s))
        else:
            self.err(where, "a schema is an object or a boolean")

    def parameter(self, where, p):
        p = self.ref_or(where, p, "parameters")
        if p is None or not self.keys(where, p, PARAMETER_KEYS, ("name", "in")):
            return None
        if p.get("in") not in ("query", "header", "path", "cookie"):
            self.err(where, "in must be query, header, path or cookie")
        if p.get("in") == "path" and p.get("required") is not True:
            self.err(where, "a path parameter must be required: true")
        if p.get("in") == "header" and str(p.get("name")).lower() in (
                "accept", "content-type", "authorization"):
            self.err(where, "header %r is described elsewhere, not as a parameter" % p["name"])
        if ("schema" in p) == ("content" in p):
            self.err(where, "exactly one of schema and content")
        if "schema" in p:
            self.schema(where + ".schema", p["schema"])
            if "example" in p:
                self.examples.append((where + ".example", p["schema"], p["example"]))
        if "content" in p:
            self.content(where + ".content", p["content"])
        return p

    def content(self, where, c):
        if not isinstance(c, dict) or not c:
            self.err(where, "content is a non-empty map of media types")
            return
        for mt, m in c.items():
            w = "%s[%s]" % (where, mt)
            if not re.match(r"^[a-z*]+/[a-z0-9.+*-]+$", mt):
                self.err(w, "not a media type")
            if not self.keys(w, m, MEDIA_KEYS):
                continue
            if "schema" in m:
                self.schema(w + ".schema", m["schema"])
                if "example" in m:
                    self.examples.append((w + ".example", m["schema"], m["example"]))
                for name, ex in (m.get("examples") or {}).items():
                    ex = self.ref_or(w + ".examples." + name, ex, "examples")
                    if isinstance(ex, dict) and "value" in ex:
                        self.examples.append((w + ".examples." + name, m["schema"], ex["value"]))

    def header(self, where, h):
        h = self.ref_or(where, h, "headers")
        if h is None or not self.keys(where, h, HEADER_KEYS):
            return
        if ("schema" in h) == ("content" in h):
            self.err(where, "exactly one of schema and content")
        if "schema" in h:
            self.schema(where + ".schema", h["schema"])

    def response(self, where, r):
        r = self.ref_or(where, r, "responses")
        if r is None or not self.keys(where, r, RESPONSE_KEYS, ("description",)):
            return
        if not isinstance(r.get("description"), str):
            self.err(where, "description is a string")
        for name, h in (r.get("headers") or {}).items():
            if name.lower() == "content-type":
                self.err(where, "Content-Type is not described as a header")
            self.header("%s.headers.%s" % (where, name), h)
        if "content" in r:
            self.content(where + ".content", r["content"])

    def security(self, where, reqs):
        schemes = self.doc.get("components", {}).get("securitySchemes", {})
        if not isinstance(reqs, list):
            self.err(where, "security is a list")
            return
        for req in reqs:
            if not isinstance(req, dict):
                self.err(where, "a security requirement is an object")
                continue
            for name, scopes in req.items():
                if name not in schemes:
                    self.err(where, "no security scheme %r" % name)
                if not isinstance(scopes, list):
                    self.err(where, "scopes are a list")

    def operation(self, where, op, path, path_params):
        if not self.keys(where, op, OPERATION_KEYS, ("responses",)):
            return
        params = dict(path_params)
        for i, p in enumerate(op.get("parameters") or []):
            p = self.parameter("%s.parameters[%d]" % (where, i), p)
            if p:
                params[(p.get("name"), p.get("in"))] = p
        in_template = set(re.findall(r"\{([^}]+)\}", path))
        declared = {n for (n, loc) in params if loc == "path"}
        if in_template != declared:
            self.err(where, "path parameters %s do not match the template's %s"
                     % (sorted(declared), sorted(in_template)))
        if "requestBody" in op:
            b = self.ref_or(where + ".requestBody", op["requestBody"], "requestBodies")
            if b is not None and self.keys(where + ".requestBody", b, BODY_KEYS, ("content",)):
                self.content(where + ".requestBody.content", b["content"])
        rs = op.get("responses")
        if not isinstance(rs, dict) or not rs:
            self.err(where, "responses is a non-empty map")
            rs = {}
        for code, r in rs.items():
            if is_ext(code):
                continue
            if not STATUS_RX.match(str(code)):
                self.err(where, "response key %r is not a status code" % code)
            self.response("%s.responses.%s" % (where, code), r)
        if "security" in op:
            self.security(where + ".security", op["security"])
        tags = {t.get("name") for t in self.doc.get("tags", []) if isinstance(t, dict)}
        for t in op.get("tags") or []:
            if t not in tags:
                self.err(where, "tag %r is not among the document's tags" % t)

    def run(self):
        doc = self.doc
        if not self.keys("(root)", doc, ROOT_KEYS, ("openapi", "info")):
            return
        if not re.match(r"^3\.1\.[0-9]+$", str(doc.get("openapi"))):
            self.err("openapi", "not 3.1.x")
        if "paths" not in doc and "webhooks" not in doc and "components" not in doc:
            self.err("(root)", "one of paths, webhooks, components is required")
        info = doc.get("info")
        if self.keys("info", info, {"title", "summary", "description", "termsOfService",
                                    "contact", "license", "version"}, ("title", "version")):
            for k in ("title", "version"):
                if not isinstance(info.get(k), str):
                    self.err("info." + k, "a string")
            lic = info.get("license")
            if lic is not None and self.keys("info.license", lic, {"name", "identifier", "url"},
                                             ("name",)):
                if "identifier" in lic and "url" in lic:
                    self.err("info.license", "identifier and url are exclusive")
        for i, s in enumerate(doc.get("servers") or []):
            self.keys("servers[%d]" % i, s, {"url", "description", "variables"}, ("url",))
        comps = doc.get("components", {})
        if self.keys("components", comps, COMPONENT_KINDS):
            for kind, m in comps.items():
                for name in m:
                    if not NAME_RX.match(name):
                        self.err("components.%s" % kind, "bad name %r" % name)
            for name, s in comps.get("schemas", {}).items():
                self.schema("components.schemas." + name, s)
            for name, p in comps.get("parameters", {}).items():
                self.parameter("components.parameters." + name, p)
            for name, h in comps.get("headers", {}).items():
                self.header("components.headers." + name, h)
            for name, r in comps.get("responses", {}).items():
                self.response("components.responses." + name, r)
            for name, s in comps.get("securitySchemes", {}).items():
                w = "components.securitySchemes." + name
                if self.keys(w, s, {"type", "description", "name", "in", "scheme", "bearerFormat",
                                    "flows", "openIdConnectUrl"}, ("type",)):
                    if s["type"] not in ("apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"):
                        self.err(w, "unknown type %r" % s["type"])
                    if s["type"] == "http" and "scheme" not in s:
                        self.err(w, "an http scheme needs scheme")
        if "security" in doc:
            self.security("security", doc["security"])
        ids = {}
        for path, item in (doc.get("paths") or {}).items():
            w = "paths[%s]" % path
            if not path.startswith("/"):
                self.err(w, "a path starts with /")
            if not self.keys(w, item, PATH_ITEM_KEYS):
                continue
            path_params = {}
            for i, p in enumerate(item.get("parameters") or []):
                p = self.parameter("%s.parameters[%d]" % (w, i), p)
                if p:
                    path_params[(p.get("name"), p.get("in"))] = p
            for m in HTTP_METHODS:
                if m in item:
                    op = item[m]
                    self.operation("%s.%s" % (w, m), op, path, path_params)
                    oid = op.get("operationId") if isinstance(op, dict) else None
                    if oid in ids:
                        self.err(w, "operationId %r also on %s" % (oid, ids[oid]))
                    ids[oid] = path
        # Every $ref anywhere resolves inside the document.
        stack = [("(root)", doc)]
        while stack:
            where, node = stack.pop()
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str):
                    try:
                        pointer(doc, ref)
                    except (KeyError, ValueError, IndexError):
                        self.err(where, "unresolved $ref %r" % ref)
                stack.extend(("%s.%s" % (where, k), v) for k, v in node.items())
            elif isinstance(node, list):
                stack.extend(("%s[%d]" % (where, i), v) for i, v in enumerate(node))
        # Schemas are JSON Schema 2020-12; examples fit them.
        for where, s in self.schemas:
            try:
                Validator.check_schema(s)
            except jsonschema.exceptions.SchemaError as e:
                self.err(where, "not a JSON Schema 2020-12: %s" % e.message)
        for where, s, ex in self.examples:
            for e in schema_errors(doc, s, ex):
                self.err(where, "example does not fit its schema: " + e)
        for name, s in comps.get("schemas", {}).items():
            for i, ex in enumerate(s.get("examples", []) if isinstance(s, dict) else []):
                for e in schema_errors(doc, {"$ref": "#/components/schemas/" + name}, ex):
                    self.err("components.schemas.%s.examples[%d]" % (name, i), e)


def structure(doc):
    """Everything wrong with doc as an OpenAPI 3.1 document ([] if nothing)."""
    w = _Walk(doc)
    w.run()
    return w.errors


# ----------------------------------------------------------------- answers


class Api:
    """The operations of a document, and real answers checked against them."""

    def __init__(self, doc):
        self.doc = doc
        self.routes = []  # (regex, template, path item), literal paths first
        for path, item in doc["paths"].items():
            rx = "^" + "".join("[^/]+" if re.match(r"^\{[^}]+\}$", part) else re.escape(part)
                               for part in re.split(r"(\{[^}]+\})", path)) + "$"
            self.routes.append((re.compile(rx), path, item))
        self.routes.sort(key=lambda r: r[1].count("{"))
        self.seen = {}  # operationId -> set of statuses answered

    def operations(self):
        """{operationId: (method, path template, operation)}."""
        out = {}
        for path, item in self.doc["paths"].items():
            for m in HTTP_METHODS:
                if m in item:
                    out[item[m]["operationId"]] = (m.upper(), path, item[m])
        return out

    def route(self, path):
        """(template, path item) of a request path (query ignored), or (None, None)."""
        p = path.split("?", 1)[0]
        for rx, template, item in self.routes:
            if rx.match(p):
                return template, item
        return None, None

    def check(self, method, path, status, headers, body):
        """Errors ([] if none) of an answer against the document; records
        the operation and status as exercised. headers: lower-case names."""
        template, item = self.route(path)
        errs = []
        where = "%s %s -> %d" % (method, path, status)
        look = "get" if method == "HEAD" else method.lower()
        if item is None or look not in item:
            # Not an operation: an unknown path (404) or another method (405).
            if status == 404:
                resp = self.doc["components"]["responses"]["NotFound"]
            elif status == 405 and item is not None:
                resp = self.doc["components"]["responses"]["MethodNotAllowed"]
                allow = headers.get("allow")
                if allow != item.get("x-allow"):
                    errs.append("%s: Allow %r, the document's x-allow says %r"
                                % (where, allow, item.get("x-allow")))
            else:
                return ["%s: the document has no %s %s, so only 404 or 405 may answer"
                        % (where, method, template or path)]
        else:
            op = item[look]
            rs = op["responses"]
            resp = rs.get(str(status)) or rs.get("%dXX" % (status // 100)) or rs.get("default")
            if resp is None:
                return ["%s: status %d is not among %s's documented ones %s"
                        % (where, status, op["operationId"], sorted(rs))]
            self.seen.setdefault(op["operationId"], set()).add(status)
        resp = deref(self.doc, resp)
        for name, h in (resp.get("headers") or {}).items():
            h = deref(self.doc, h)
            v = headers.get(name.lower())
            if v is None:
                if h.get("required"):
                    errs.append("%s: required header %s missing" % (where, name))
                continue
            errs += ["%s: header %s %r: %s" % (where, name, v, e)
                     for e in schema_errors(self.doc, h.get("schema", {}), v)]
        content = resp.get("content")
        if not content:
            if body:
                errs.append("%s: a body where the document has none" % where)
            return errs
        ctype = headers.get("content-type", "")
        essence = ctype.split(";", 1)[0].strip().lower()
        media = content.get(essence) or content.get(essence.split("/")[0] + "/*") or \
            content.get("*/*")
        if media is None:
            return errs + ["%s: Content-Type %r is not among %s" % (where, ctype, sorted(content))]
        if method == "HEAD":
            if body:
                errs.append("%s: a body on HEAD" % where)
            return errs
        schema = media.get("schema", {})
        if essence == "application/json" or essence.endswith("+json"):
            try:
                value = json.loads(body)
            except ValueError:
                return errs + ["%s: not JSON: %r" % (where, body[:200])]
        elif essence.startswith("text/") or essence == "image/svg+xml":
            try:
                value = body.decode("utf-8")
            except UnicodeDecodeError:
                return errs + ["%s: %s that is not UTF-8" % (where, essence)]
        else:
            value = None  # binary: nothing to validate against a JSON schema
        if value is not None:
            errs += ["%s: body %s" % (where, e) for e in schema_errors(self.doc, schema, value)]
        return errs
