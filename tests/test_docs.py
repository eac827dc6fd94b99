"""Docs that cannot drift (STYLE §11): every YAML example in the docs is a verbatim excerpt of a
real flow file, which the service loads."""

from __future__ import annotations

import re

import pytest

from gateway.engine.definition import load_flows

from .conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


def yaml_examples():
    for doc in DOCS:
        for block in BLOCK.findall(doc.read_text(encoding="utf-8")):
            yield pytest.param(block, id=f"{doc.name}:{block.splitlines()[0][:30]}")


def test_the_docs_show_flow_examples():
    assert list(yaml_examples()), "README.md lost its flow example"


@pytest.mark.parametrize("block", list(yaml_examples()))
def test_each_yaml_example_is_an_excerpt_of_a_loaded_flow_file(block):
    flows = load_flows(ROOT / "flows")
    sources = [flow.path for flow in flows.flows.values()]
    texts = [open(path, encoding="utf-8").read() for path in sources]
    assert any(block in text for text in texts), "this example is not in any file under flows/"
