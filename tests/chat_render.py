#!/usr/bin/env python3
"""Reference chat-template renderer for tests/test_chat_template.cpp.

Renders like Hugging Face transformers' apply_chat_template: an ImmutableSandboxedEnvironment
with trim_blocks, lstrip_blocks and loop controls, `tojson` replaced by
json.dumps(ensure_ascii=False, ...), plus `raise_exception` and a fixed-clock `strftime_now`.

usage: chat_render.py REQUEST.json
  REQUEST = {"template": PATH, "now": UNIX_SECONDS, "cases": [CONTEXT, ...]}
  or   {"now": UNIX_SECONDS, "cases": [{"source": TEMPLATE_TEXT, "context": CONTEXT}, ...]}
prints a JSON list with one {"ok": true, "out": TEXT} or {"ok": false, "error": MSG} per case.
"""
import json
import sys
from datetime import datetime, timezone

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        req = json.load(f)
    now = datetime.fromtimestamp(req.get("now", 0), timezone.utc)

    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return now.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now

    shared_source = None
    if "template" in req:
        with open(req["template"], encoding="utf-8") as f:
            shared_source = f.read()
    results = []
    for case in req["cases"]:
        source = shared_source if shared_source is not None else case["source"]
        ctx = case if shared_source is not None else case["context"]
        try:
            results.append({"ok": True, "out": env.from_string(source).render(**ctx)})
        except Exception as e:  # syntax and render errors alike
            results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
