"""The dashboard's languages: English (the source strings) and Simplified Chinese, through gettext.

Catalogs are ordinary gettext `.po` files under `locale/<lang>/LC_MESSAGES/messages.po`, maintained with
Babel's `pybabel extract/update`; they are compiled in memory when first used, so there is no build
step to forget. The language of a request comes from `?lang=`, then the `tianmu_lang` cookie, then the
browser's Accept-Language, then English.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache
from gettext import NullTranslations
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

__all__ = ["LANGUAGES", "choose_language", "gettext_for", "translations"]

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"en": "English", "zh_CN": "简体中文"}
COOKIE = "tianmu_lang"


@cache
def translations(language: str) -> NullTranslations:
    """The gettext translations of a language (English: the identity)."""
    po = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if language == "en" or not po.is_file():
        return NullTranslations()
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def _normalise(tag: str) -> str | None:
    tag = tag.strip().replace("-", "_")
    if not tag:
        return None
    if tag in LANGUAGES:
        return tag
    primary = tag.split("_")[0].lower()
    if primary == "zh":
        return "zh_CN"
    if primary == "en":
        return "en"
    return None


def choose_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for candidate in (query, cookie):
        if candidate and (found := _normalise(candidate)):
            return found
    if accept_language:
        weighted: list[tuple[float, str]] = []
        for part in accept_language.split(","):
            tag, _, params = part.partition(";")
            quality = 1.0
            if params.strip().startswith("q="):
                try:
                    quality = float(params.strip()[2:])
                except ValueError:
                    quality = 0.0
            if (found := _normalise(tag)) is not None:
                weighted.append((quality, found))
        if weighted:
            return max(weighted, key=lambda item: item[0])[1]
    return "en"


def gettext_for(language: str) -> Callable[..., str]:
    """`_("on %(n)s assets", n=3)`: gettext with Jinja2's new-style keyword formatting."""
    translate = translations(language).gettext

    def gettext(message: str, **values: object) -> str:
        text = translate(message)
        return text % values if values else text

    return gettext
