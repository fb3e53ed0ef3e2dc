"""The zh_TW catalog: every extracted message translated, placeholders intact, no fuzzy entries; the UI speaks it.

The catalog checks read messages.pot and messages.po as text (nothing is compiled here); the page checks need the
compiled .mo, which `make test` (the `translations` target) builds first.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from tests.support.apps import browser_default_client

TRANSLATIONS = Path(__file__).resolve().parent.parent / "portal" / "translations"
POT = TRANSLATIONS / "messages.pot"
PO = TRANSLATIONS / "zh_Hant_TW" / "LC_MESSAGES" / "messages.po"

# printf-style conversions as Python's % operator reads them: %(name)s, %s, %d, %5.2f, %% ...
PERCENT = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%]")
BRACES = re.compile(r"\{[^{}]*\}")  # str.format fields: {0}, {name}, {name!r:>5}


def _catalog(path: Path):
    with path.open("rb") as f:
        return read_po(f)


def _key(message) -> str:
    return message.id if isinstance(message.id, str) else message.id[0]


def _strings(value) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


def _placeholders(text: str, python_format: bool) -> list[str]:
    found = sorted(BRACES.findall(text))
    if python_format:
        found += sorted(m for m in PERCENT.findall(text) if m != "%%")
    return found


@pytest.fixture(scope="module")
def template():
    return _catalog(POT)


@pytest.fixture(scope="module")
def catalog():
    return _catalog(PO)


def test_catalog_has_one_plural_form(catalog):
    assert catalog.locale_identifier.startswith("zh")
    assert catalog.plural_forms.replace(" ", "") == "nplurals=1;plural=0;"


def test_template_holds_only_portal_and_template_sources(template):
    files = {path for message in template if message.id for path, _line in message.locations}
    assert files, "messages.pot is empty"
    stray = sorted(f for f in files if not f.startswith(("portal/", "templates/")))
    assert not stray, f"messages.pot holds strings from outside portal/ and templates/: {stray}"


def test_every_message_is_translated(template, catalog):
    missing = []
    for message in template:
        if not message.id:
            continue
        entry = catalog.get(message.id, message.context)
        if entry is None or not all(s.strip() for s in _strings(entry.string)):
            missing.append(_key(message))
    assert not missing, f"{len(missing)} message(s) without a zh_TW translation: {missing}"


def test_no_fuzzy_or_obsolete_entries(catalog):
    fuzzy = [_key(m) for m in catalog if m.id and m.fuzzy]
    assert not fuzzy, f"fuzzy entries: {fuzzy}"
    assert catalog.fuzzy is False, "the catalog header is marked fuzzy"


def test_translations_keep_the_placeholders(template, catalog):
    wrong = []
    for message in template:
        if not message.id:
            continue
        entry = catalog.get(message.id, message.context)
        if entry is None:
            continue  # reported by test_every_message_is_translated
        python_format = message.python_format or entry.python_format
        expected = _placeholders(_strings(message.id)[-1], python_format)
        for translated in _strings(entry.string):
            got = _placeholders(translated, python_format)
            if got != expected:
                wrong.append((_key(message), expected, got))
    assert not wrong, "placeholders differ between msgid and msgstr:\n" + "\n".join(map(repr, wrong))


def test_translations_keep_html_markup(template, catalog):
    tag = re.compile(r"</?[A-Za-z][^<>]*>|&[A-Za-z]+;|&#\d+;")
    wrong = []
    for message in template:
        entry = catalog.get(message.id, message.context) if message.id else None
        if entry is None:
            continue
        expected = sorted(tag.findall(_strings(message.id)[0]))
        for translated in _strings(entry.string):
            if sorted(tag.findall(translated)) != expected:
                wrong.append((_key(message), expected, translated))
    assert not wrong, f"markup differs between msgid and msgstr: {wrong}"


def test_login_page_speaks_zh_tw_by_default_and_english_on_request(app):
    client = browser_default_client(app)
    zh = client.get("/login").get_data(as_text=True)
    assert "登入" in zh
    assert "Log in" not in zh

    assert client.get("/lang/en").status_code == 302
    en = client.get("/login").get_data(as_text=True)
    assert "Log in" in en
    assert "登入" not in en

    client.get("/lang/zh_TW")
    assert "登入" in client.get("/login").get_data(as_text=True)


def test_template_is_extracted_from_the_code_as_it_is(template, tmp_path):
    """messages.pot holds every message the code and templates have now (re-extract it when this fails)."""
    import subprocess
    import sys

    fresh = tmp_path / "messages.pot"
    root = TRANSLATIONS.parent.parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "_l",
            "-o",
            str(fresh),
            ".",
        ],
        cwd=root,
        check=True,
        capture_output=True,
    )
    current = {_key(m) for m in _catalog(fresh) if m.id}
    committed = {_key(m) for m in template if m.id}
    assert sorted(current - committed) == [], "messages.pot is missing these: run pybabel extract and translate them"
