"""The zh-TW catalog speaks a shop's words (README "Words"): no developer words, one way of writing Taipei time."""

from __future__ import annotations

import gettext
import io
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LC_MESSAGES = Path(__file__).resolve().parent.parent / "portal" / "translations" / "zh_Hant_TW" / "LC_MESSAGES"
# developer words a shop does not use, and the other way of writing Taipei time
BANNED = ("歷程", "佐證資料", "快取", "回應時間", "台灣時間", "臺灣時間", "臺北時間", "API 呼叫")


def compiled_from_po() -> dict:
    """messages.po compiled as `pybabel compile` does, read back as gettext reads it."""
    with (LC_MESSAGES / "messages.po").open("rb") as f:
        catalog = read_po(f)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)._catalog


def catalogs() -> list[tuple[str, dict]]:
    found = [("messages.po, compiled", compiled_from_po())]
    mo = LC_MESSAGES / "messages.mo"
    if mo.exists():  # built by `make translations`: checked too when present
        with mo.open("rb") as f:
            found.append(("messages.mo", gettext.GNUTranslations(f)._catalog))
    return found


@pytest.mark.parametrize(("name", "messages"), catalogs(), ids=lambda value: value if isinstance(value, str) else "")
def test_no_translation_uses_a_developer_word(name, messages):
    bad = sorted((str(key), text) for key, text in messages.items() if key and any(word in text for word in BANNED))
    assert not bad, f"{name}: developer words in {bad}"


def test_the_ban_list_is_seen_by_the_check():
    """The check reads msgstrs: a catalog with a banned word fails it."""
    messages = {"Timeline": "歷程", "Answered at": "回應時間"}
    assert all(any(word in text for word in BANNED) for text in messages.values())
