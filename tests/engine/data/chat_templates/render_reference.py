#!/usr/bin/env python3
"""Renders every template of templates/ with every conversation of cases.json exactly as Hugging
Face transformers' apply_chat_template does, and writes expected.json (checked in; the C++
golden test compares rbee's renderer with it byte for byte).

transformers compiles chat templates with Jinja2's ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True) and the loopcontrols extension, adds the globals raise_exception and
strftime_now and replaces tojson with json.dumps(ensure_ascii=False, ...). This script sets up the
same environment without depending on transformers itself; strftime_now is pinned to the time in
cases.json so the outputs are stable.

Usage: python3 render_reference.py   (needs jinja2 >= 3.1)
"""
import datetime
import json
import pathlib

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = pathlib.Path(__file__).resolve().parent


def make_environment(now):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return now.strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, conversation, tool_sets, bos_token, eos_token):
    tools = conversation.get("tools")
    context = {
        "messages": conversation["messages"],
        "tools": tool_sets[tools] if tools else None,
        "add_generation_prompt": conversation["add_generation_prompt"],
        "bos_token": bos_token,
        "eos_token": eos_token,
        **conversation.get("extra", {}),
    }
    try:
        return {"output": env.from_string(source).render(**context)}
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e)}


def main():
    cases = json.loads((HERE / "cases.json").read_text(encoding="utf-8"))
    env = make_environment(datetime.datetime(*cases["now"]))
    conversations = {c["name"]: c for c in cases["conversations"]}
    sources = {name: (HERE / "templates" / f"{name}.jinja").read_text(encoding="utf-8")
               for name in cases["templates"]}
    expected = {"templates": {}, "engine": {}}
    for name, special in cases["templates"].items():
        expected["templates"][name] = {
            c["name"]: render(env, sources[name], c, cases["tool_sets"], special["bos_token"],
                              special["eos_token"])
            for c in cases["conversations"]
        }
    checks = cases["engine_checks"]
    for template, conversation in checks["cases"]:
        expected["engine"].setdefault(template, {})[conversation] = render(
            env, sources[template], conversations[conversation], cases["tool_sets"],
            checks["bos_token"], checks["eos_token"])
    (HERE / "expected.json").write_text(
        json.dumps(expected, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
