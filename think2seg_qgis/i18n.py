"""Translation: every user-facing string goes through ``tr`` (context ``Think2Seg``).

``scripts/plugin_i18n.py`` collects the literal arguments of ``tr(...)`` into i18n/think2seg_qgis.ts (the
template translators fill in with Qt Linguist); ``install_translator`` loads i18n/think2seg_qgis_<locale>.qm
when QGIS runs in a language the plugin has a translation for. Sentences with values use ``str.format``
placeholders inside the translated text, so that a translation can move them: ``tr("Read {name}").format(...)``.
"""

from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtCore import QCoreApplication, QLocale, QSettings, QTranslator

CONTEXT = "Think2Seg"
I18N_DIR = Path(__file__).resolve().parent / "i18n"

_translator: QTranslator | None = None


def tr(text: str) -> str:
    return QCoreApplication.translate(CONTEXT, text)


def tr_noop(text: str) -> str:
    """Marks a literal for the translation template where it is defined; ``tr`` translates it where shown."""
    return text


def install_translator() -> None:
    """Load the translation for QGIS's locale (``locale/userLocale``), when the plugin ships one."""
    global _translator
    if _translator is not None:
        return
    locale = str(QSettings().value("locale/userLocale", "") or QLocale().name())[:2]
    path = I18N_DIR / f"think2seg_qgis_{locale}.qm"
    if not path.is_file():
        return
    translator = QTranslator()
    if translator.load(str(path)):
        QCoreApplication.installTranslator(translator)
        _translator = translator


def remove_translator() -> None:
    global _translator
    if _translator is not None:
        QCoreApplication.removeTranslator(_translator)
        _translator = None


def number_text(value: float, decimals: int = 0) -> str:
    """A number as QGIS's language writes it, with its thousands separators ("1,496.47" in English, "1.496,47" in
    German): QGIS sets the default QLocale; its C locale and "omit group separator" option would drop them."""
    locale = QLocale()
    locale.setNumberOptions(QLocale.NumberOption.DefaultNumberOptions)
    return locale.toString(float(value), "f", int(decimals))
