"""``cace-bench report``: an offline HTML page (figures embedded) and its Markdown twin, from records."""

from .build import build_report

__all__ = ["build_report"]
