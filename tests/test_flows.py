"""The running service's flows and catalogs: hot reload, and refusing a bad set (SPEC §4)."""

from __future__ import annotations

import shutil

import pytest

from gateway import flows as registry_module
from gateway.engine.definition import FlowError
from gateway.flows import FlowRegistry
from gateway.i18n import CatalogError

from .conftest import ROOT


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Copies of the real flows and catalogs, with the reload check made immediate."""
    flows, locales = tmp_path / "flows", tmp_path / "locales"
    shutil.copytree(ROOT / "flows", flows)
    shutil.copytree(ROOT / "locales", locales)
    monkeypatch.setattr(registry_module, "RELOAD_SECONDS", 0.0)
    return flows, locales


def edit(path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_a_changed_flow_file_is_picked_up(dirs):
    flows, locales = dirs
    registry = FlowRegistry(flows, locales)
    edit(flows / "checkin.yaml", "version: 1", "version: 2")
    current, _ = registry.current()
    assert current["checkin"].version == "2"


def test_a_changed_catalog_is_picked_up(dirs):
    flows, locales = dirs
    registry = FlowRegistry(flows, locales)
    edit(
        locales / "bn/LC_MESSAGES/flows.po",
        'msgstr "ধন্যবাদ, আপনি যুক্ত হয়েছেন।"',
        'msgstr "স্বাগতম, আপনি যুক্ত হয়েছেন।"',
    )
    _, texts = registry.current()
    assert texts.flow("bn", "Thank you, you are enrolled.") == "স্বাগতম, আপনি যুক্ত হয়েছেন।"


def test_a_broken_flow_file_is_refused_and_the_last_good_set_serves(dirs, caplog):
    flows, locales = dirs
    registry = FlowRegistry(flows, locales)
    edit(flows / "checkin.yaml", "sample: 3", "sample: [")
    current, _ = registry.current()
    assert current["checkin"].sample == 3
    assert "flow files refused, the last good set keeps serving" in caplog.text


def test_a_broken_catalog_is_refused_and_no_language_disappears(dirs, caplog):
    flows, locales = dirs
    registry = FlowRegistry(flows, locales)
    before = registry.current()[1].languages()
    (locales / "bn/LC_MESSAGES/flows.po").write_bytes(b'msgid "x"\nmsgstr "\xff\xfe\n')
    _, texts = registry.current()
    assert texts.languages() == before  # the language menu keeps its numbering
    assert texts.flow("bn", "Thank you, you are enrolled.") != "Thank you, you are enrolled."
    assert "flow files refused" in caplog.text


def test_start_up_refuses_a_broken_catalog(dirs):
    flows, locales = dirs
    po = locales / "hi/LC_MESSAGES/flows.po"
    po.write_text(
        po.read_text(encoding="utf-8") + "a line an editor left half-typed\n", encoding="utf-8"
    )
    with pytest.raises(CatalogError, match="hi/LC_MESSAGES/flows.po"):
        FlowRegistry(flows, locales)


def test_start_up_refuses_broken_flows(dirs):
    flows, locales = dirs
    (flows / "enrol.yaml").unlink()
    with pytest.raises(FlowError, match="the enrolment flow is missing"):
        FlowRegistry(flows, locales)
