"""The API's documentation page (/docs), rendered from its OpenAPI spec on the server.

FastAPI's and BentoML's pages load Swagger UI's script, styles and fonts from a CDN, and BentoML's
index page embeds a tag manager: a reader's browser would tell third parties who reads our API
docs, and the page would break on a network without the internet. This page is plain HTML with
our own stylesheet (/static/docs.css): no script, nothing from another host. /docs.json keeps the
machine-readable spec.
"""

from __future__ import annotations

import json
import re

from jinja2 import Environment

_TAG = re.compile(r"<[^>]+>")
_METHODS = ("get", "post", "put", "patch", "delete")
_PAGE = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string("""\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }} API</title>
<link rel="stylesheet" href="/static/docs.css">
</head>
<body>
<header>
<h1>{{ title }} API</h1>
<p>Every endpoint but the health checks (and /metrics, where configured open) needs an API key:
<code>Authorization: Bearer KEY</code> or <code>X-API-Key: KEY</code>. Bodies are JSON. The specification itself, for tools:
<a href="/docs.json">/docs.json</a> (OpenAPI {{ version }}).</p>
<nav><ul>
{% for op in operations %}
<li><a href="#{{ op.anchor }}"><span class="method">{{ op.method }}</span> {{ op.path }}</a></li>
{% endfor %}
</ul></nav>
</header>
<main>
{% for op in operations %}
<section class="operation" id="{{ op.anchor }}">
<h2><span class="method">{{ op.method }}</span> <code>{{ op.path }}</code></h2>
{% if op.text %}<p>{{ op.text }}</p>{% endif %}
{% if op.parameters %}
<h3>Parameters</h3>
<table><tr><th>name</th><th>in</th><th>type</th><th>required</th><th>about</th></tr>
{% for p in op.parameters %}
<tr><td><code>{{ p.name }}</code></td><td>{{ p.where }}</td><td>{{ p.type }}</td><td>{{ "yes" if p.required else "" }}</td><td>{{ p.text }}</td></tr>
{% endfor %}
</table>
{% endif %}
{% if op.body %}<h3>Body</h3><p>{{ op.body }}</p>{% endif %}
<h3>Answers</h3>
<ul>
{% for status, text in op.answers %}<li><strong>{{ status }}</strong> {{ text }}</li>{% endfor %}
</ul>
</section>
{% endfor %}
<section id="schemas">
<h2>Schemas</h2>
{% for schema in schemas %}
<section class="schema" id="schema-{{ schema.name }}">
<h3>{{ schema.name }}</h3>
{% if schema.text %}<p>{{ schema.text }}</p>{% endif %}
{% if schema.fields %}
<table><tr><th>field</th><th>type</th><th>required</th><th>about</th></tr>
{% for f in schema.fields %}
<tr><td><code>{{ f.name }}</code></td><td>{{ f.type }}</td><td>{{ "yes" if f.required else "" }}</td><td>{{ f.text }}</td></tr>
{% endfor %}
</table>
{% endif %}
{% if schema.example %}<pre>{{ schema.example }}</pre>{% endif %}
</section>
{% endfor %}
</section>
</main>
</body>
</html>
""")


def render_docs(spec: dict) -> str:
    """The documentation page for an OpenAPI spec (as /docs.json serves it)."""
    operations = [_operation(path, method, op) for path, item in spec.get("paths", {}).items()
                  for method, op in item.items() if method in _METHODS and isinstance(op, dict)]
    schemas = [_schema(name, schema) for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items())]
    return _PAGE.render(title=spec.get("info", {}).get("title", "API"), version=spec.get("openapi", ""),
                        operations=operations, schemas=schemas)


def _operation(path: str, method: str, op: dict) -> dict:
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    return {
        "anchor": f"{method}-{re.sub(r'[^A-Za-z0-9]+', '-', path).strip('-') or 'root'}",
        "method": method.upper(), "path": path, "text": _plain(op.get("description") or op.get("summary")),
        "parameters": [{"name": p.get("name"), "where": p.get("in"), "type": _type(p.get("schema", {})),
                        "required": p.get("required", False), "text": _plain(p.get("description"))}
                       for p in op.get("parameters", [])],
        "body": _type(body) if body else None,
        "answers": [(str(status), " - ".join(filter(None, [_plain(answer.get("description")), _answer_type(answer)])))
                    for status, answer in sorted(op.get("responses", {}).items(), key=lambda kv: str(kv[0]))],
    }


def _schema(name: str, schema: dict) -> dict:
    required = set(schema.get("required", []))
    example = schema.get("example")
    return {"name": name, "text": _plain(schema.get("description")),
            "fields": [{"name": field, "type": _type(spec), "required": field in required,
                        "text": _plain(spec.get("description"))} for field, spec in schema.get("properties", {}).items()],
            "example": json.dumps(example, indent=2) if example is not None else None}


def _answer_type(answer: dict) -> str:
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    return _type(schema) if schema else ""


def _type(schema: dict) -> str:
    """A schema in words: 'Claim', 'list of Decision or ClaimError', 'one of denied, paid'."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " or ".join(dict.fromkeys(_type(s) for s in schema[union]))
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    if schema.get("type") == "array":
        return "list of " + _type(schema.get("items", {}))
    if schema.get("type") == "object" and schema.get("title"):
        return schema["title"]
    return schema.get("format") or schema.get("type") or "any"


def _plain(text: str | None) -> str:
    """Text only: descriptions may carry HTML tags (BentoML's own do); the page shows none."""
    return _TAG.sub("", text or "").strip()
